"""Device health: what devices report about themselves (reset reason, uptime, heap, RSSI,
their own metrics), whether they are online, and release health built from it.

Reports arrive through the one intake (device_reports/): on the config fetch as headers
(headers.py) and on MQTT (mqtt.py). This package imports the device (configs/); the
device never imports it (the list's `online` columns come in through
configs/list_columns.py, plugged in by create_app).
"""
