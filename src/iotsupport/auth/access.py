"""Who may call a route: one declaration beside each route.

Every view is marked with `@public` or `@requires(Role...)`; a test walks the
URL map so that no route can be left unmarked. `iotsupport.auth` enforces these
marks in one `before_request` hook (when OIDC_ENABLED is on).
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
class Access:
    """Roles allowed to call a route; an empty set means anyone, without a token."""

    roles: frozenset[Role]

    @property
    def is_public(self) -> bool:
        return not self.roles


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


def access_of(view: t.Callable[..., t.Any]) -> Access | None:
    access: Access | None = getattr(view, "access", None)
    return access


def current_actor() -> str:
    """Who is making this request, for the audit trail: a token's subject, else anonymous."""
    actor: str = g.get("actor", ANONYMOUS)
    return actor
