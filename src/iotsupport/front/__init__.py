"""The ASGI front of `iotsupport serve`: bodies read on the event loop, device fetches
answered there from memory, the rest handed whole to the Flask app's threads (app.py)."""

import typing as _t

# app.extensions[WAITS]: coroutines that may hold a complete request on the event loop
# before it goes to a thread (a log follow waits there for newer lines: device_logs/live.py).
WAITS = "iotsupport.front.waits"
Wait = _t.Callable[[dict[str, _t.Any]], _t.Awaitable[None]]
