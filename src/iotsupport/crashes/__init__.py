"""Crashes: core dumps and backtraces decoded against the release that crashed, grouped."""
