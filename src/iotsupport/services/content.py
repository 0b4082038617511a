"""Rules for a config's MAC address and its JSON content."""

from __future__ import annotations

import json
import math
import re
import typing as t
from dataclasses import dataclass
from hashlib import blake2b

from iotsupport.errors import InvalidInput

_MAC = re.compile(r"[0-9a-f]{2}(?:[:-][0-9a-f]{2}){5}", re.IGNORECASE)


def normalize_mac(raw: str) -> str:
    """`AA-bb:CC-...` -> `aa:bb:cc:...`; anything that is not a MAC is refused."""
    if not _MAC.fullmatch(raw):
        raise InvalidInput(
            "mac_address must be six hex pairs separated by ':' or '-'",
            {"mac_address": raw[:64]},
        )
    return raw.lower().replace("-", ":")


def _refuse_constant(name: str) -> t.NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text[:32]} is too large")
    return value


def parse_json_object(text: str) -> dict[str, t.Any]:
    """Parse strict JSON (no NaN/Infinity) that must be an object."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidInput("content is nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput(f"content is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidInput("content must be a JSON object")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("content contains characters that are not valid UTF-8") from None
    return value


@dataclass(frozen=True)
class DerivedFields:
    device_name: str | None
    device_entity_id: str | None
    enable_ota: bool | None


def _text_or_none(value: object) -> str | None:
    # NUL cannot be stored in a PostgreSQL text column; treat it as the wrong type.
    return value if isinstance(value, str) and "\x00" not in value else None


def derive_fields(content: dict[str, t.Any]) -> DerivedFields:
    ota = content.get("enableOTA")
    return DerivedFields(
        device_name=_text_or_none(content.get("deviceName")),
        device_entity_id=_text_or_none(content.get("deviceEntityId")),
        enable_ota=ota if isinstance(ota, bool) else None,
    )


def content_etag(version: int, content: str) -> str:
    """Strong entity tag (unquoted) that changes with every saved version of a config.

    It covers the content itself, so a database rebuilt with new content under old
    ids and versions can never answer a device's stale tag with 304.
    """
    digest = blake2b(content.encode("utf-8"), digest_size=12, person=b"iotsupport")
    digest.update(f":{version}".encode())
    return digest.hexdigest()
