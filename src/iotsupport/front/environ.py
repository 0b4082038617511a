"""The WSGI environ of a request whose head came through ASGI (PEP 3333 from ASGI's scope)."""

from __future__ import annotations

import sys
import typing as t

# Repeated headers are joined as one value; cookies with their own separator.
_JOIN = {"HTTP_COOKIE": "; "}


def head_environ(scope: t.Mapping[str, t.Any]) -> dict[str, t.Any]:
    """Everything but the body: enough for the device fetch answered from memory."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root) :]
    environ: dict[str, t.Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.encode("utf-8").decode("latin-1"),
        # WSGI carries the decoded path's bytes as latin-1 (PEP 3333).
        "PATH_INFO": path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SERVER_SOFTWARE": "Granian",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        # The body is whole: werkzeug may read a chunked one to its end.
        "wsgi.input_terminated": True,
    }
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH":
            key = name
        else:
            key = f"HTTP_{name}"
        if key in environ:
            value = f"{environ[key]}{_JOIN.get(key, ',')}{value}"
        environ[key] = value
    return environ


def with_body(environ: dict[str, t.Any], body: t.BinaryIO, size: int) -> dict[str, t.Any]:
    environ["wsgi.input"] = body
    if size or "CONTENT_LENGTH" in environ:
        environ["CONTENT_LENGTH"] = str(size)  # a chunked body's length, now known
    return environ
