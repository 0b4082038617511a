"""Which headers of a request the image proxy may send upstream: the one decision.

Only names on FORWARDABLE_HEADERS, and only values that are not a credential
of this server. Cookie (ours are the admin's login), hop-by-hop headers and
anything else are refused with 400 rather than silently dropped, so that a
device author learns at once why the upstream did not get them.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import typing as t
from collections.abc import Collection
from collections.abc import Iterable
from collections.abc import Iterator

from iotsupport.credentials.tokens import TOKEN_PREFIX as DEVICE_TOKEN_PREFIX
from iotsupport.errors import InvalidInput

# A device passes its Home Assistant token in Authorization; the rest describe
# the image wanted. Compared without regard to case.
FORWARDABLE_HEADERS = ("Authorization", "Accept", "Accept-Language", "User-Agent")
_FORWARDABLE = {name.lower(): name for name in FORWARDABLE_HEADERS}


class Headers(t.Protocol):
    """The request's headers, looked up without regard to case (werkzeug's Headers)."""

    def get(self, key: str) -> str | None: ...


class HeaderNotForwardable(InvalidInput):
    code = "header_not_forwardable"


def check_forwardable_name(name: str) -> None:
    """Refuse a header name that is not on the safe list (400 naming the list)."""
    if name.lower() not in _FORWARDABLE:
        raise HeaderNotForwardable(
            f"the {name} header cannot be forwarded; only {', '.join(FORWARDABLE_HEADERS)} can",
            {"header": name, "forwardable": list(FORWARDABLE_HEADERS)},
        )


def forwarded_headers(
    names: Iterable[str],
    headers: Headers,
    *,
    own_credentials: Collection[str] = (),
    issuer: str | None = None,
) -> dict[str, str]:
    """The headers named in `names`, taken from the request's `headers`.

    `own_credentials` are secrets of this server the request carries (its login
    cookies' values); `issuer` is our identity provider, whose tokens are ours too.
    """
    wanted = list(names)
    if not wanted:
        return {}
    site = (headers.get("Sec-Fetch-Site") or "none").lower()
    if site not in ("none", "same-origin"):
        # A browser sent this on behalf of another site's page: whatever it attaches
        # by itself (a cached Basic login, ...) belongs to the user, not to a device.
        raise HeaderNotForwardable(
            "headers are not forwarded for requests made by another site's page",
            {"sec_fetch_site": site},
        )
    forwarded: dict[str, str] = {}
    for name in wanted:
        check_forwardable_name(name)
        value = headers.get(name)
        if value is None:
            raise InvalidInput(f"the request has no {name} header to forward", {"header": name})
        if _is_our_credential(value, own_credentials, issuer):
            raise HeaderNotForwardable(
                f"the {name} header carries a credential of this server; it is never forwarded",
                {"header": name},
            )
        forwarded[_FORWARDABLE[name.lower()]] = value
    return forwarded


def _is_our_credential(value: str, own: Collection[str], issuer: str | None) -> bool:
    """Whether `value` carries a secret of ours, in any spelling an upstream might decode.

    A device token is looked for in the raw value and in every word of it read as
    base64 the lenient way (no padding, URL-safe alphabet, stray characters, any
    scheme spelling), so `Basic` written any way an upstream accepts is caught.
    """
    if any(secret and secret in value for secret in own):
        return True
    if DEVICE_TOKEN_PREFIX in value:
        return True
    words = value.split()
    # Each word, and the words after the scheme run together (decoders that skip spaces).
    candidates = [*words, "".join(words[1:])]
    if any(_DEVICE_TOKEN_BYTES in decoded for word in candidates for decoded in _lenient_b64(word)):
        return True
    return (
        issuer is not None
        and len(words) == 2
        and words[0].lower() == "bearer"
        and _jwt_issuer(words[1]) == issuer
    )


_DEVICE_TOKEN_BYTES = DEVICE_TOKEN_PREFIX.encode("ascii")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")
_URL_SAFE = str.maketrans("-_", "+/")


def _lenient_b64(word: str) -> Iterator[bytes]:
    """`word` decoded as base64 as forgiving decoders do, from each of the 4 alignments."""
    letters = _NOT_BASE64.sub("", word.translate(_URL_SAFE))
    for skip in range(4):
        text = letters[skip:]
        if len(text) % 4 == 1:  # a lone last character holds no whole byte
            text = text[:-1]
        try:
            yield base64.b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            continue


def _jwt_issuer(token: str) -> str | None:
    """The `iss` a JWT claims (unverified: enough to recognise one of ours)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer.rstrip("/") if isinstance(issuer, str) else None
