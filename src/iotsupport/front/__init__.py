"""The ASGI front of `iotsupport serve`: bodies read on the event loop, device fetches
answered there from memory, the rest handed whole to the Flask app's threads (app.py)."""
