"""Helpers for the firmware asset tests: real RSA keys, signed fields, raw multipart bodies."""

from __future__ import annotations

import functools
import hashlib
import typing as t
import uuid
from datetime import UTC
from datetime import datetime
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

from conftest import RecordingPublisher
from conftest import make_settings
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import CollectorRegistry
from werkzeug.test import TestResponse

from iotsupport import create_app
from iotsupport.assets.signing import sign_timestamp
from iotsupport.assets.signing import sign_upload

BOUNDARY = "----iotsupport-test-boundary"


@functools.cache
def rsa_key(which: str = "server") -> RSAPrivateKey:
    """One generated key per name for the whole run ("server", "other", ...)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_private_key(path: Path, key: RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def write_public_key(path: Path, key: RSAPrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def iso_now(shift_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=shift_seconds)).isoformat()


def signed_fields(
    name: str, content: bytes, timestamp: str | None = None, key: RSAPrivateKey | None = None
) -> dict[str, str]:
    """The `timestamp`, `sha256` and `signature` fields a CI job sends for this file."""
    timestamp = iso_now() if timestamp is None else timestamp
    sha256 = hashlib.sha256(content).hexdigest()
    signature = sign_upload(key or rsa_key(), timestamp=timestamp, name=name, sha256=sha256)
    return {"timestamp": timestamp, "sha256": sha256, "signature": signature}


def legacy_fields(timestamp: str | None = None, key: RSAPrivateKey | None = None) -> dict[str, str]:
    """The fields of the old scheme: a signature over the timestamp alone."""
    timestamp = iso_now() if timestamp is None else timestamp
    return {"timestamp": timestamp, "signature": sign_timestamp(key or rsa_key(), timestamp)}


class Unsigned(dict[str, str]):
    """Fields signed once `multipart` knows the file's name and bytes (see `signed`)."""

    def __init__(self, timestamp: str | None, key: RSAPrivateKey | None) -> None:
        super().__init__()
        self.timestamp = iso_now() if timestamp is None else timestamp
        self.key = key

    def bound(self, name: str, content: bytes) -> dict[str, str]:
        return signed_fields(name, content, self.timestamp, self.key)


def signed(timestamp: str | None = None, key: RSAPrivateKey | None = None) -> Unsigned:
    """Correct fields for whatever file they are sent with, signed at `timestamp` with `key`."""
    return Unsigned(timestamp, key)


def unique_name(suffix: str = ".bin") -> str:
    """A filename nobody else uses (the MQTT broker may be shared)."""
    return f"fw-{uuid.uuid4().hex[:12]}{suffix}"


def multipart(
    fields: dict[str, str], filename: str | None = None, content: bytes = b""
) -> tuple[bytes, str]:
    """A multipart/form-data body built by hand, so any filename can be sent.

    An unusual filename goes in RFC 5987 form (filename*=UTF-8''...), which
    carries slashes, NUL and control characters through the part headers intact.
    """
    if isinstance(fields, Unsigned):
        fields = fields.bound(filename or "", content)
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
        )
    if filename is not None:
        if filename.isalnum() or filename == "":
            disposition = f'form-data; name="file"; filename="{filename}"'
        else:
            disposition = f"form-data; name=\"file\"; filename*=UTF-8''{quote(filename, safe='')}"
        parts.append(
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()
    return body, f"multipart/form-data; boundary={BOUNDARY}"


def upload(
    client: FlaskClient,
    name: str,
    content: bytes,
    fields: dict[str, str] | None = None,
) -> TestResponse:
    body, content_type = multipart(signed() if fields is None else fields, name, content)
    return client.post("/api/assets", data=body, content_type=content_type)


class ClosingClient(FlaskClient):
    """Reads and closes every response, as a WSGI server does (downloads hold a file open)."""

    def open(self, *args: t.Any, **kwargs: t.Any) -> TestResponse:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


def build_assets_app(
    database_url: str,
    assets_dir: Path | None,
    key_path: Path | None,
    publisher: RecordingPublisher | None = None,
    **overrides: t.Any,
) -> Flask:
    settings = make_settings(
        database_url, assets_dir=assets_dir, signing_key_path=key_path, **overrides
    )
    app = create_app(settings, publisher=publisher, registry=CollectorRegistry())
    app.test_client_class = ClosingClient
    return app


def temp_files(folder: Path) -> list[str]:
    """Uploads in progress (or left behind, which must never happen): staged in each
    process's folder under .staging (whose owner file is bookkeeping)."""
    return sorted(
        str(path.relative_to(folder))
        for path in (folder / ".staging").rglob("*")
        if path.is_file() and path.name != ".owner"
    ) + sorted(
        path.name for path in folder.iterdir() if path.name.startswith(".") and path.is_file()
    )


def contents(folder: Path) -> list[Path]:
    """What the assets folder holds: its files, and any staged upload left behind."""
    return sorted(
        [path for path in folder.iterdir() if path.name != ".staging"]
        + [folder / name for name in temp_files(folder)]
    )
