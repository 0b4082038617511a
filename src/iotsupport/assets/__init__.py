"""Firmware assets: signed uploads from CI into a folder, downloads for OTA."""
