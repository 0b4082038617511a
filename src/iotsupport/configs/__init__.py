"""Device configs: a config row is the device (its MAC, content, versions and check-ins)."""
