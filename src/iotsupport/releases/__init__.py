"""Firmware releases: ESP32 app images (esp_image.py), files kept in the database
(storage.py, tables.py) and served from there (downloads.py)."""
