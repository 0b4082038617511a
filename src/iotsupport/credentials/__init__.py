"""Device credentials: tokens, device authentication, provisioning bundles, broker accounts."""
