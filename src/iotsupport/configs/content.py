"""Rules for a config's MAC address and its JSON content."""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from hashlib import blake2b

from iotsupport.errors import InvalidInput
from iotsupport.json_text import load_object

MAC_PATTERN = r"^[0-9A-Fa-f]{2}(?:[:-][0-9A-Fa-f]{2}){5}$"
MAC_DESCRIPTION = "aa:bb:cc:dd:ee:ff, AA-BB-CC-DD-EE-FF or any mix of case and separators"
_MAC = re.compile(MAC_PATTERN)


def normalize_mac(raw: str) -> str:
    """`AA-bb:CC-...` -> `aa:bb:cc:...`; anything that is not a MAC is refused."""
    if not _MAC.fullmatch(raw):
        raise InvalidInput(
            "mac_address must be six hex pairs separated by ':' or '-'",
            {"mac_address": raw[:64]},
        )
    return raw.lower().replace("-", ":")


def parse_json_object(text: str) -> dict[str, t.Any]:
    """The content as a dict; refused unless it is a strict JSON object of valid Unicode."""
    return load_object(text, "content")


@dataclass(frozen=True)
class DerivedFields:
    device_name: str | None
    device_entity_id: str | None
    enable_ota: bool | None


def _text_or_none(value: object) -> str | None:
    # NUL cannot be stored in a PostgreSQL text column, nor a lone surrogate anywhere:
    # treat them as the wrong type.
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


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
