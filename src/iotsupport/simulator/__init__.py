"""The fleet simulator: many devices against a running server, as their firmware would.

`iotsupport simulate --devices N` (command.py) provisions N devices of a model through
the admin API (or reads them from a file), then each device (device.py) fetches its
config with its token and If-None-Match, hears its retained desired topic over MQTT
(mqtt.py: one or a few broker connections carry every device's subscription), fetches
again when it changes, follows rollouts (asks GET /api/device/firmware, downloads the
release, checks its SHA-256, "reboots" and reports the new version; a share of them,
`--fail-rate`, reports the old one instead), and polls as a fallback. The fleet
(fleet.py) counts what happened and prints a summary.

One process runs it all on one asyncio loop with httpx, so a thousand devices need no
thousand threads.
"""
