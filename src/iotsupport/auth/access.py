"""Who may call a route: one declaration beside each route.

Every view is marked with `@public`, `@requires(Role...)` or `@requires_device(...)`;
a test walks the URL map so that no route can be left unmarked. `iotsupport.auth`
enforces these marks in one `before_request` hook: the roles when OIDC_ENABLED is
on, the device credentials whatever OIDC_ENABLED is (as DEVICE_AUTH says).
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from enum import StrEnum

from flask import g

View = t.TypeVar("View", bound=t.Callable[..., t.Any])

ANONYMOUS = "anonymous"


class Role(StrEnum):
    ADMIN = "admin"
    ASSET_UPLOADER = "asset-uploader"


@dataclass(frozen=True)
class DeviceAccess:
    """How a device-authenticated route finds and needs its device.

    `mac_arg`: the URL argument naming the device the route serves (its config); a
    token then opens only that device. `or_roles`: callers with these roles (an
    admin's JWT) may call it instead of a device. `always`: a valid device credential
    is needed in every DEVICE_AUTH mode, `off` included (the route means nothing
    without knowing the device, e.g. rotating its own token). `signed_url`: a signed
    URL (credentials/signed_urls.py) admits its device in place of a token; since every
    rightful caller can have one, nobody is let in anonymously unless DEVICE_AUTH=off.
    """

    mac_arg: str | None = None
    or_roles: frozenset[Role] = frozenset()
    always: bool = False
    signed_url: bool = False


@dataclass(frozen=True)
class Access:
    """Roles allowed to call a route; an empty set means anyone, without a token.

    With `device` set, the route is for devices (see DeviceAccess); `roles` is empty.
    """

    roles: frozenset[Role]
    device: DeviceAccess | None = None

    @property
    def is_public(self) -> bool:
        return not self.roles and self.device is None


def public(view: View) -> View:
    """Anyone may call this route (devices, probes, the login flow itself)."""
    view.access = Access(frozenset())  # type: ignore[attr-defined]
    return view


def requires(*roles: Role) -> t.Callable[[View], View]:
    """Only a caller holding one of `roles` (or `admin`) may call this route."""
    allowed = frozenset({Role.ADMIN, *roles})

    def decorate(view: View) -> View:
        view.access = Access(allowed)  # type: ignore[attr-defined]
        return view

    return decorate


def requires_device(
    *,
    mac_arg: str | None = None,
    or_roles: t.Iterable[Role] = (),
    always: bool = False,
    signed_url: bool = False,
) -> t.Callable[[View], View]:
    """Only a device with a valid credential may call this route (as DEVICE_AUTH says).

    `or_roles=(Role.ADMIN,)` expresses "a device, or an admin".
    """
    access = Access(frozenset(), DeviceAccess(mac_arg, frozenset(or_roles), always, signed_url))

    def decorate(view: View) -> View:
        view.access = access  # type: ignore[attr-defined]
        return view

    return decorate


def access_of(view: t.Callable[..., t.Any]) -> Access | None:
    access: Access | None = getattr(view, "access", None)
    return access


def current_actor() -> str:
    """Who is making this request, for the audit trail: a token's subject, else anonymous."""
    actor: str = g.get("actor", ANONYMOUS)
    return actor
