"""Device authentication: the device half of the one access hook (`auth._enforce_access`).

A device sends `Authorization: Bearer iotd_...`, or HTTP Basic with its MAC as the
user name and its token as the password. What a route needs depends on DEVICE_AUTH:

| route | off | optional | required |
|---|---|---|---|
| config fetch (`mac_arg`) | MAC alone | its token, if it has a credential | its token |
| other device routes | nothing | a valid token, if one is sent | a valid token |
| `always` (own rotation) | a valid token | a valid token | a valid token |
| `signed_url` (release images) | nothing | a token or signed URL | a token or signed URL |

Every refusal is the same 401 (wrong token, unknown MAC, nothing sent) after the same
work; from an address with too many failed tokens, 429. Whatever is not a device
credential (an admin's JWT, a Home Assistant token for the image proxy) is not one:
it is ignored in `off`/`optional`, refused in `required`, and on a route that also
admits roles it is checked as an admin's login.
"""

from __future__ import annotations

import enum
import logging
import time
import typing as t
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

from flask import Request
from flask import g
from flask import request
from prometheus_client import CollectorRegistry
from sqlalchemy import bindparam
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.orm import Session

from iotsupport.auth.access import DeviceAccess
from iotsupport.configs.checkins import client_address
from iotsupport.configs.content import normalize_mac
from iotsupport.configs.reports import DeviceReports
from iotsupport.configs.tables import DeviceConfig
from iotsupport.credentials.accounts import BrokerAccounts
from iotsupport.credentials.headers import Presented
from iotsupport.credentials.headers import presented_credential
from iotsupport.credentials.limits import FailureLimiter
from iotsupport.credentials.metrics import DeviceMetrics
from iotsupport.credentials.service import CredentialService
from iotsupport.credentials.signed_urls import UrlSigner
from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import CredentialState
from iotsupport.credentials.tokens import Verdict
from iotsupport.credentials.tokens import check
from iotsupport.credentials.tokens import token_hash
from iotsupport.db import READ_ONLY_METHODS
from iotsupport.db import Database
from iotsupport.db import commit
from iotsupport.db import get_session
from iotsupport.db.base import utcnow
from iotsupport.device_cache import DeviceCache
from iotsupport.device_cache import DeviceDocument
from iotsupport.errors import DeviceUnauthorized
from iotsupport.errors import Forbidden
from iotsupport.errors import NotFound
from iotsupport.errors import TooManyRequests
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

_CREDENTIALS = DeviceCredential.__table__.c
_CONFIGS = DeviceConfig.__table__.c
_STATE = select(
    _CREDENTIALS.config_id,
    _CONFIGS.mac_address,
    _CREDENTIALS.token_hash,
    _CREDENTIALS.previous_hash,
    _CREDENTIALS.previous_expires_at,
    _CREDENTIALS.broker_hash,
).select_from(
    DeviceCredential.__table__.join(
        DeviceConfig.__table__, _CONFIGS.id == _CREDENTIALS.config_id
    )  # a deleted config's credential opens nothing
)
_STATE_BY_HASH = _STATE.where(
    or_(
        _CREDENTIALS.token_hash == bindparam("hash"),
        _CREDENTIALS.previous_hash == bindparam("hash"),
    )
)
_STATE_BY_MAC = _STATE.where(_CONFIGS.mac_address == bindparam("mac"))


# The config fetch's route, as metrics and the access log name it.
FETCH_ROUTE = "/api/configs/<mac:mac>.json"


class SignedUrlInvalid(Forbidden):
    code = "signed_url_invalid"


class Admission(enum.Enum):
    """What `DeviceGate.admit_fetch` decided, when no device proved itself."""

    ANONYMOUS = "served without a credential"
    UNKNOWN = "no such config (DEVICE_AUTH=off: 404)"
    REFUSED = "no token where one is needed (401)"
    WRONG_TOKEN = "a token that is not valid for this MAC (401, counted as a failure)"
    DEFERRED = "valid, but its first use must be written: only the Flask route does that"


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """`g.device`: the device that proved who it is on this request."""

    config_id: int
    mac_address: str
    token_hash: str  # "" when a signed URL admitted it


class DeviceGate:
    """Per app: decides device routes (one instance, built by create_app)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        accounts: BrokerAccounts,
        registry: CollectorRegistry,
        cache: DeviceCache,
        reports: DeviceReports,
    ) -> None:
        self.cache = cache  # every device's document, in memory
        self.reports = reports  # credential uses go to the one intake of device reports
        self.mode = settings.device_auth
        self.grace = timedelta(hours=settings.device_token_grace_hours)
        self.database = database
        self.accounts = accounts
        self.trusted = settings.trusted_networks
        self.limiter = FailureLimiter(
            settings.device_auth_max_failures, settings.device_auth_failure_window_seconds
        )
        self.metrics = DeviceMetrics(registry)
        self.signer = UrlSigner(database)

    def enforce(self, access: DeviceAccess, admin_allowed: t.Callable[[], bool]) -> None:
        """Let the request through (`g.device` set when a device proved itself), or raise.

        `admin_allowed` checks the caller's login against `access.or_roles`.
        """
        # The objects behind the proxies, read once: this runs on every device request.
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        context = g._get_current_object()
        presented = presented_credential(req.headers.get("Authorization"))
        if access.mac_arg is not None:
            self._enforce_for_mac(req, context, access.mac_arg, presented)
            return
        if access.signed_url and presented.kind != "token" and self.signer.present(req.args):
            self._admit_signed(req, context)
            return
        if self.mode == "off" and not access.always:
            return
        if presented.kind == "token":
            with self._lookup_session(req) as session:
                if presented.mac is not None:
                    row = session.execute(_STATE_BY_MAC, {"mac": presented.mac}).one_or_none()
                else:
                    hashed = token_hash(presented.token)
                    row = session.execute(_STATE_BY_HASH, {"hash": hashed}).one_or_none()
            state = CredentialState(*row) if row is not None else None
            self._decide(req, context, state, presented)
            return
        if access.or_roles and admin_allowed():
            return
        if access.always or access.signed_url or self.mode == "required":
            self._refuse(req, counted=False)
        self._count(req, "none")

    def _admit_signed(self, req: Request, context: t.Any) -> None:
        """A signed URL: its device, if it is valid for this path now and the device exists."""
        signed = self.signer.verify(req.path, req.args, time.time())
        # The MAC is as the server signed it (normalized); the device must still exist.
        document = self.cache.document(get_session, signed[0], ()) if signed else None
        if signed is None or document is None:
            self._count(req, "refused")
            raise SignedUrlInvalid(
                "this download link is not valid (changed, expired, or for another file): "
                "ask GET /api/device/firmware for a new one"
            )
        context.device = AuthenticatedDevice(document.config_id, signed[0], "")
        context.signed_url_expires = signed[1]
        self._count(req, "signed")

    def _enforce_for_mac(
        self, req: Request, context: t.Any, arg: str, presented: Presented
    ) -> None:
        mac = normalize_mac(str((req.view_args or {}).get(arg, "")))
        known = req.if_none_match.as_set(include_weak=True)
        document = self.cache.document(get_session, mac, known)
        context.device_document = document
        admission = self.admit_fetch(req.environ, mac, document, presented)
        if isinstance(admission, AuthenticatedDevice):
            context.device = admission
        elif admission is Admission.UNKNOWN:
            raise NotFound(f"no config for {mac}")
        elif admission in (Admission.REFUSED, Admission.WRONG_TOKEN):
            self._refuse(req, counted=admission is Admission.WRONG_TOKEN)

    def admit_fetch(
        self,
        environ: dict[str, t.Any],
        mac: str,
        document: DeviceDocument | None,
        presented: Presented,
        *,
        may_write: bool = True,
    ) -> AuthenticatedDevice | Admission:
        """May this device fetch be answered? The one decision of the config fetch, for
        the Flask route and for the fast path (device_cache/fast_path.py), which passes
        `may_write=False`: a first use that must retire a token is left to Flask.

        Counts and records an admitted fetch; a refusal is left to the caller."""
        if self.mode == "off":
            return Admission.UNKNOWN if document is None else Admission.ANONYMOUS
        if presented.kind == "token":
            state = document.credential if document is not None else None
            if presented.mac is not None and presented.mac != mac:
                state = None  # another device's user name: refused after the same work
            hashed = token_hash(presented.token)
            verdict = check(state, hashed, utcnow())
            if not verdict.accepted or state is None:
                return Admission.WRONG_TOKEN
            writes = verdict.retire_previous or (verdict.broker_behind and self.accounts.enabled)
            if writes and not may_write:
                return Admission.DEFERRED
            self.reports.credential_used(state.config_id, environ)
            self.metrics.count(FETCH_ROUTE, "valid")
            if writes:
                self._after_first_use(state, presented.token, verdict)
            return AuthenticatedDevice(state.config_id, state.mac_address, hashed)
        if self.mode == "optional" and document is not None and document.credential is None:
            self.metrics.count(FETCH_ROUTE, "none")
            return Admission.ANONYMOUS
        return Admission.REFUSED

    def _decide(
        self, req: Request, context: t.Any, state: CredentialState | None, presented: Presented
    ) -> None:
        hashed = token_hash(presented.token)
        verdict = check(state, hashed, utcnow())
        if not verdict.accepted or state is None:
            self._refuse(req, counted=True)
            return
        context.device = AuthenticatedDevice(state.config_id, state.mac_address, hashed)
        self.reports.credential_used(state.config_id, req.environ)
        self._count(req, "valid")
        if verdict.retire_previous or (verdict.broker_behind and self.accounts.enabled):
            self._after_first_use(state, presented.token, verdict)

    def _after_first_use(self, state: CredentialState, token: str, verdict: Verdict) -> None:
        """The rare write of a device request: retire the previous token, update the broker."""
        with self.database.session() as session:
            service = CredentialService(session, self.accounts, grace=self.grace)
            service.after_first_use(
                state,
                token,
                retire=verdict.retire_previous,
                broker=verdict.broker_behind and self.accounts.enabled,
            )
            commit(session)

    def _refuse(self, req: Request, *, counted: bool) -> t.NoReturn:
        environ = req.environ
        address = (
            client_address(
                environ.get("REMOTE_ADDR"), environ.get("HTTP_X_FORWARDED_FOR"), self.trusted
            )
            or "unknown"
        )
        now = time.monotonic()
        wait = self.limiter.retry_after(address, now)
        if counted:
            self.limiter.fail(address, now)
            log.info("device token refused from %s on %s", address, req.path[:128])
        if wait is not None:
            self._count(req, "limited")
            raise TooManyRequests(
                "too many failed device logins from this address; try again later", wait
            )
        self._count(req, "refused")
        raise DeviceUnauthorized()

    def _count(self, req: Request, credential: str) -> None:
        rule = req.url_rule
        self.metrics.count(rule.rule if rule else "unmatched", credential)

    @contextmanager
    def _lookup_session(self, req: Request) -> Iterator[Session]:
        """A read without a transaction; never the request's write session, which would
        hold SQLite's write lock while `_after_first_use` needs it."""
        if req.method in READ_ONLY_METHODS:
            yield get_session()
            return
        with self.database.session(read_only=True) as session:
            yield session


def current_device() -> AuthenticatedDevice | None:
    device: AuthenticatedDevice | None = g.get("device")
    return device
