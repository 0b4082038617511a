"""Device models: kinds of device, each with a JSON Schema its configs must meet."""
