"""Staged rollouts of a release to a model's devices, their progress from what the devices
report, and the firmware each device should run (its target)."""
