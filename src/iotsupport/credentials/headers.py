"""What a request's Authorization header offers a device route, and what the image proxy
may send upstream (never a device token)."""

from __future__ import annotations

import base64
import binascii
import typing as t
from dataclasses import dataclass

from flask import request

from iotsupport.configs.content import normalize_mac
from iotsupport.credentials.tokens import looks_like_token
from iotsupport.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Presented:
    """What a request's Authorization header offers a device route."""

    kind: t.Literal["none", "foreign", "token"]
    token: str = ""
    mac: str | None = None  # the user name of HTTP Basic


NOTHING = Presented("none")
FOREIGN = Presented("foreign")


def presented_credential(header: str | None) -> Presented:
    """Bearer iotd_..., or Basic <mac>:<token>; anything else is not a device credential."""
    if not header:
        return NOTHING
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "bearer" and looks_like_token(value):
        return Presented("token", value)
    if scheme == "basic":
        try:
            # The last colon: a MAC has colons of its own, a token never has one.
            user, sep, password = base64.b64decode(value, validate=True).decode().rpartition(":")
            mac = normalize_mac(user) if sep else None
        except (binascii.Error, UnicodeDecodeError, ValueError, InvalidInput):
            return FOREIGN  # e.g. a camera's password on its way through the image proxy
        if mac is not None:
            return Presented("token", password, mac)
    return FOREIGN


UPSTREAM_AUTHORIZATION = "X-Upstream-Authorization"


def upstream_header(name: str) -> str | None:
    """The value the image proxy may send upstream as header `name`, or None.

    `Authorization` upstream is the request's X-Upstream-Authorization when it has one;
    otherwise (the legacy way, DEVICE_AUTH off or optional) its own Authorization,
    unless that is a device credential: a device token never leaves the server.
    """
    if name.lower() != "authorization":
        return request.headers.get(name)
    upstream = request.headers.get(UPSTREAM_AUTHORIZATION)
    if upstream is not None:
        return upstream
    own = request.headers.get("Authorization")
    if own is None or presented_credential(own).kind == "token":
        return None
    return own


class UpstreamHeaders:
    """The request's headers as the image proxy may send them upstream (see upstream_header)."""

    def get(self, key: str) -> str | None:
        return upstream_header(key)
