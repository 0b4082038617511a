"""Rotation never bricks a device, and never hands it to whoever copied an old token.

The device saves a fresh token (in NVS) before it uses it; an answer lost on the
way, or a reboot before saving, leaves it with the token it had. An admin may issue
a token the device never gets. An attacker may copy the token the device holds at any
moment and then ask for fresh tokens and fetch with everything it has.

`Rules` states what the README promises, apart from the implementation; every sequence
of steps is run against the pure decision (`tokens.check`/`tokens.rotate`) and against
`Rules` side by side, and a table of sequences through the real HTTP routes on SQLite
and PostgreSQL. Besides agreeing with the rules, each sequence is held to what the
rules are for: no self-rotation drops a token an admin issued; a token an admin's
rotation superseded never rotates and dies with the grace; a device an admin provisioned
after the leak stays the admin's.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass
from dataclasses import field
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from conftest import DeviceAppFactory
from conftest import assert_error
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from credentials_support import rotate_own
from flask import Flask
from sqlalchemy import update

from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import CredentialState
from iotsupport.credentials.tokens import Superseded
from iotsupport.credentials.tokens import check
from iotsupport.credentials.tokens import new_token
from iotsupport.credentials.tokens import rotate
from iotsupport.credentials.tokens import token_hash
from iotsupport.db.base import utcnow
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
GRACE = timedelta(hours=168)

# The device:
# ask: it asks for a fresh token and saves the answer.
# ask_lost: it asks, the server answers, the answer never gets saved (lost, or a reboot).
# fetch: a request with the saved token (the first one with a fresh token retires the old).
# reboot: the device restarts (it keeps what it saved).
# wait: time passes, far beyond DEVICE_TOKEN_GRACE_HOURS.
# The admin:
# provisioned: an admin issues a token and puts it on the device (a new bundle).
# issued: an admin issues a token that never reaches the device (it keeps what it holds).
# Someone else:
# leak: an attacker copies the token the device holds now.
# steal_ask: the attacker asks for a fresh token with each token it has, newest first,
#   until one is answered (and keeps the answer).
# steal_fetch: the attacker makes a request with each token it has.
Step = t.Literal[
    "ask",
    "ask_lost",
    "fetch",
    "reboot",
    "wait",
    "provisioned",
    "issued",
    "leak",
    "steal_ask",
    "steal_fetch",
]
DEVICE_STEPS: tuple[Step, ...] = ("ask", "ask_lost", "fetch", "reboot", "wait", "provisioned")
EVERY_STEP: tuple[Step, ...] = (
    "ask",
    "ask_lost",
    "fetch",
    "wait",
    "provisioned",
    "issued",
    "leak",
    "steal_ask",
    "steal_fetch",
)  # reboot changes nothing the decision sees: left out of the long product
OK, UNAUTHORIZED, SUPERSEDED = 200, 401, 403


@dataclass
class Rules:
    """The rules of the README, kept apart from the implementation.

    Two tokens at most work: the newest one issued (by an admin or the device), and the
    one the server last saw the device use (at first: the first one issued). The second
    works until the newest is used; once an admin's token superseded it, only until the
    grace ends, and it can no longer rotate. A self-rotation replaces the newest and
    keeps the proven one; an admin's rotation does too, unless the proven one's grace has
    passed: then the newest (never used) is the one kept for the grace.
    """

    newest: str
    proven: str
    by_admin: bool = False
    expires: datetime | None = None

    def valid(self, token: str, now: datetime) -> bool:
        if token == self.newest:
            return True
        alive = self.expires is None or now < self.expires
        return token == self.proven and alive

    def use(self, token: str, now: datetime) -> bool:
        if not self.valid(token, now):
            return False
        if token == self.newest and token != self.proven:
            self.proven, self.expires = token, None
        return True

    def ask(self, token: str, fresh: str, now: datetime) -> int:
        if not self.use(token, now):
            return UNAUTHORIZED
        if token != self.newest and self.by_admin:
            return SUPERSEDED
        self.newest, self.by_admin = fresh, False
        return OK

    def admin(self, fresh: str, now: datetime) -> None:
        if self.proven != self.newest and not self.valid(self.proven, now):
            self.proven = self.newest
        self.newest, self.by_admin, self.expires = fresh, True, now + GRACE


# --- every sequence, against the pure decision ----------------------------------------------


@dataclass
class Model:
    """The server's credential state, the rules, the device's saved token and the
    attacker's tokens, stepped by hand. Tokens are their hashes here (what the
    decision sees)."""

    state: CredentialState
    rules: Rules
    held: str
    now: datetime
    issued: list[str] = field(default_factory=list)
    stolen: list[str] = field(default_factory=list)
    by_admin: set[str] = field(default_factory=set)
    # Indexes of the last step of each kind, for the properties.
    last: dict[str, int] = field(default_factory=dict)
    steps: int = 0

    @classmethod
    def fresh(cls) -> Model:
        token = cls.token(0)
        state = CredentialState(1, MAC, token, None, None, None)
        return cls(state, Rules(token, token), token, datetime(2026, 1, 1, tzinfo=UTC), [token])

    @staticmethod
    def token(number: int) -> str:
        return f"{number:064x}"

    def new(self) -> str:
        token = self.token(len(self.issued))
        self.issued.append(token)
        return token

    def use(self, token: str) -> bool:
        verdict = check(self.state, token, self.now)
        if verdict.retire_previous:
            self.state = replace(self.state, previous_hash=None, previous_expires_at=None)
        assert verdict.accepted == self.rules.use(token, self.now), self.steps
        return verdict.accepted

    def ask(self, token: str) -> tuple[int, str]:
        """What a self-rotation with `token` answers, and the fresh token."""
        fresh = self.new()
        newest = self.state.token_hash
        expected = self.rules.ask(token, fresh, self.now)
        if not check(self.state, token, self.now).accepted:
            outcome = UNAUTHORIZED
        else:
            self.use(token)
            try:
                rotated = rotate(self.state, fresh, used=token, expires_at=None, now=self.now)
            except Superseded:
                outcome = SUPERSEDED
            else:
                self._rotated(rotated)
                outcome = OK
        assert outcome == expected
        if outcome == OK and newest in self.by_admin:
            # No self-rotation drops a token an admin issued.
            assert self.valid(newest), "a self-rotation dropped the admin's token"
        return outcome, fresh

    def valid(self, token: str) -> bool:
        return check(self.state, token, self.now).accepted

    def step(self, step: Step) -> None:
        self.steps += 1
        if step in ("ask", "ask_lost"):
            outcome, fresh = self.ask(self.held)
            if step == "ask" and outcome == OK:
                self.held = fresh
        elif step == "fetch":
            self.use(self.held)
        elif step == "wait":
            self.now += GRACE * 10
        elif step in ("provisioned", "issued"):
            fresh = self.new()
            expires = self.now + GRACE
            self._rotated(rotate(self.state, fresh, used=None, expires_at=expires, now=self.now))
            self.rules.admin(fresh, self.now)
            self.by_admin.add(fresh)
            if step == "provisioned":
                self.held = fresh
        elif step == "leak":
            self.stolen.append(self.held)
        elif step == "steal_ask":
            for token in reversed(self.stolen):
                outcome, fresh = self.ask(token)
                if outcome == OK:
                    self.stolen.append(fresh)
                    assert self.last.get("leak", -1) > self.last_admin(), "rotated after a reissue"
                    break
        elif step == "steal_fetch":
            for token in list(self.stolen):
                self.use(token)
        self.last[step] = self.steps
        self.check()

    def last_admin(self) -> int:
        return max(self.last.get("provisioned", -1), self.last.get("issued", -1))

    def check(self) -> None:
        """The rules hold for every token, and the properties they are for."""
        for token in self.issued:
            assert self.valid(token) == self.rules.valid(token, self.now), token
        # Never more than two tokens work at once.
        assert sum(self.valid(token) for token in self.issued) <= 2
        leak, provisioned = self.last.get("leak", -1), self.last.get("provisioned", -1)
        # A device provisioned after the leak stays working, whatever the attacker does
        # (unless the admin issues yet another token it never gets).
        if provisioned > leak and self.last.get("issued", -1) < provisioned:
            assert self.valid(self.held), "the attacker locked out a provisioned device"
        # After a reissue following the leak, once the grace has passed, nothing stolen works.
        if self.last_admin() > leak and self.last.get("wait", -1) > self.last_admin():
            assert not any(self.valid(token) for token in self.stolen), "a stolen token lives"

    def copy(self) -> Model:
        return Model(
            self.state,
            replace(self.rules),
            self.held,
            self.now,
            list(self.issued),
            list(self.stolen),
            set(self.by_admin),
            dict(self.last),
            self.steps,
        )

    def _rotated(self, rotated: t.Any) -> None:
        self.state = replace(
            self.state,
            token_hash=rotated.token_hash,
            previous_hash=rotated.previous_hash,
            previous_expires_at=rotated.previous_expires_at,
        )


def run(sequence: tuple[Step, ...]) -> Model:
    model = Model.fresh()
    for index, step in enumerate(sequence):
        try:
            model.step(step)
        except AssertionError as exc:
            raise AssertionError(f"{sequence[: index + 1]}: {exc}") from exc
    return model


def every_sequence(
    steps: tuple[Step, ...], length: int, visit: t.Callable[[Model, tuple[Step, ...]], None]
) -> int:
    """Run every sequence of up to `length` steps (a prefix once, its state copied for
    each next step); `visit` sees each. The number of sequences run."""
    count = 0

    def explore(model: Model, sequence: tuple[Step, ...]) -> None:
        nonlocal count
        for step in steps:
            child, longer = model.copy(), (*sequence, step)
            try:
                child.step(step)
                visit(child, longer)
            except AssertionError as exc:
                raise AssertionError(f"{longer}: {exc}") from exc
            count += 1
            if len(longer) < length:
                explore(child, longer)

    explore(Model.fresh(), ())
    return count


def test_no_sequence_of_up_to_six_device_steps_leaves_it_without_a_valid_token() -> None:
    def holds_a_valid_token(model: Model, sequence: tuple[Step, ...]) -> None:
        assert model.valid(model.held)

    checked = every_sequence(DEVICE_STEPS, 6, holds_a_valid_token)
    assert checked == sum(len(DEVICE_STEPS) ** n for n in range(1, 7))


def test_every_sequence_with_unseen_tokens_and_an_attacker_keeps_the_rules() -> None:
    """Up to five steps of device, admin and attacker: the decision agrees with the rules
    for every token at every step, and the properties hold (Model.check)."""
    checked = every_sequence(EVERY_STEP, 5, lambda model, sequence: None)
    assert checked == sum(len(EVERY_STEP) ** n for n in range(1, 6))


def test_a_device_that_never_got_the_newest_token_keeps_the_one_it_holds() -> None:
    """Two tokens issued before the device used either: the one it holds works within
    the grace, the first of the two never used is gone, and it cannot rotate."""
    model = run(("fetch", "issued", "issued"))
    first_issued, newest = model.issued[1], model.issued[2]
    assert model.valid(model.held) and model.valid(newest)
    assert not model.valid(first_issued)
    assert model.ask(model.held)[0] == SUPERSEDED and model.valid(newest)
    model.step("fetch")
    model.step("wait")
    assert not model.valid(model.held) and model.valid(newest)


def test_a_reissue_after_the_grace_does_not_bring_the_old_token_back() -> None:
    model = run(("leak", "issued", "wait", "provisioned"))
    assert not any(model.valid(token) for token in model.stolen)
    assert model.valid(model.held)


def test_the_pure_decision_retires_and_expires() -> None:
    model = Model.fresh()
    old = model.held
    model.step("provisioned")
    assert check(model.state, old, model.now).accepted  # within the grace
    assert check(model.state, old, model.now).used_previous
    model.now += GRACE + timedelta(seconds=1)
    assert not check(model.state, old, model.now).accepted  # after it
    assert not check(None, old, model.now).accepted
    assert not check(model.state, token_hash(new_token()), model.now).accepted


# --- a table of sequences, through the routes ---------------------------------------------------

SEQUENCES: dict[str, list[Step]] = {
    "ask, use": ["ask", "fetch"],
    "answer lost, use the old": ["ask_lost", "fetch"],
    "answer lost twice, then saved": ["ask_lost", "ask_lost", "ask", "fetch"],
    "saved, reboot, lost, reboot": ["ask", "reboot", "fetch", "ask_lost", "reboot", "fetch"],
    "lost, then a long time": ["ask_lost", "wait", "fetch", "ask", "fetch"],
    "saved but unused, asks again": ["ask", "ask", "fetch", "ask_lost", "ask", "fetch"],
    "provisioned, then lost answers": ["provisioned", "ask_lost", "fetch", "wait", "fetch"],
    "lost, provisioned, lost, wait": ["ask_lost", "provisioned", "ask_lost", "wait", "ask"],
    "reboots only": ["reboot", "reboot", "fetch"],
    "issued twice, never got either": ["fetch", "issued", "issued", "fetch", "ask", "fetch"],
    "issued unseen, then the grace": ["issued", "fetch", "wait", "provisioned", "fetch"],
    "got one, a second unseen": ["provisioned", "issued", "fetch", "provisioned", "fetch"],
    "leaked, reissued, attacker asks": ["leak", "provisioned", "steal_ask", "steal_fetch", "fetch"],
    "leaked, attacker first": ["leak", "steal_ask", "steal_fetch", "provisioned", "steal_ask"],
    "leaked, reissued unseen": [
        "leak",
        "issued",
        "steal_fetch",
        "steal_ask",
        "wait",
        "steal_fetch",
    ],
    "leaked after own rotation": ["ask", "leak", "provisioned", "ask_lost", "steal_ask", "fetch"],
    "attacker while lost answers": ["ask_lost", "leak", "provisioned", "steal_ask", "ask", "fetch"],
}


class Device:
    """A device, its admin and an attacker against the real server, beside the rules."""

    def __init__(self, app: Flask, config_id: int, token: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.config_id = config_id
        self.held = token
        self.issued: list[str] = [token]
        self.stolen: list[str] = []
        self.admin_issued = {token}
        self.rules = Rules(token_hash(token), token_hash(token))
        self.now = utcnow()  # the rules' clock: `wait` moves it as it moves the server's

    def ask(self, token: str) -> tuple[int, str | None]:
        newest = self.issued[-1]
        response = rotate_own(self.client, token)
        fresh = response.get_json().get("token") if response.status_code == OK else None
        expected = self.rules.ask(token_hash(token), token_hash(fresh or new_token()), self.now)
        assert response.status_code == expected, response.get_data(as_text=True)
        if response.status_code == SUPERSEDED:
            assert_error(response, 403, "token_superseded")
            assert token not in response.get_data(as_text=True)
        if fresh is not None:
            self.issued.append(fresh)
            if newest in self.admin_issued:  # no self-rotation drops a token an admin issued
                assert fetch_status(self.app, newest) == OK
        return response.status_code, fresh

    def use(self, token: str) -> None:
        status = fetch(self.client, MAC, bearer(token)).status_code
        assert status == (OK if self.rules.use(token_hash(token), self.now) else UNAUTHORIZED)

    def step(self, step: Step) -> None:
        if step in ("ask", "ask_lost"):
            status, fresh = self.ask(self.held)
            if step == "ask" and fresh is not None:
                self.held = fresh
        elif step == "fetch":
            self.use(self.held)
        elif step == "wait":
            with state(self.app).database.session() as session:
                session.execute(
                    update(DeviceCredential)
                    .where(DeviceCredential.previous_expires_at.is_not(None))
                    .values(previous_expires_at=utcnow() - timedelta(seconds=1))
                )
                session.commit()
            self.now += GRACE * 10
        elif step in ("provisioned", "issued"):
            fresh = issue(self.client, self.config_id)
            self.issued.append(fresh)
            self.admin_issued.add(fresh)
            self.rules.admin(token_hash(fresh), self.now)
            if step == "provisioned":
                self.held = fresh
        elif step == "leak":
            self.stolen.append(self.held)
        elif step == "steal_ask":
            for token in reversed(self.stolen):
                status, fresh = self.ask(token)
                if fresh is not None:
                    self.stolen.append(fresh)
                    break
        elif step == "steal_fetch":
            for token in list(self.stolen):
                self.use(token)

    def valid_tokens(self) -> list[str]:
        return [token for token in self.issued if fetch_status(self.app, token) == OK]


def fetch_status(app: Flask, token: str) -> int:
    """What a fetch with `token` would answer, without the write a first use makes."""
    with state(app).database.session() as session:
        credential = session.get(DeviceCredential, 1)
    assert credential is not None
    now = utcnow()
    stored = CredentialState(
        1,
        MAC,
        credential.token_hash,
        credential.previous_hash,
        credential.previous_expires_at,
        credential.broker_hash,
    )
    return OK if check(stored, token_hash(token), now).accepted else UNAUTHORIZED


@pytest.mark.parametrize("sequence", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_rotation_sequences_over_http(device_app: DeviceAppFactory, sequence: list[Step]) -> None:
    app = device_app(device_auth="required", device_auth_max_failures=1000)
    client = app.test_client()
    config_id = create_device(client, MAC)
    assert config_id == 1
    device = Device(app, config_id, issue(client, config_id))
    for index, step in enumerate(sequence):
        device.step(step)
        # The server agrees with the rules about every token ever issued.
        for token in device.issued:
            expected = OK if device.rules.valid(token_hash(token), device.now) else UNAUTHORIZED
            assert fetch_status(app, token) == expected, (sequence[: index + 1], token)
        assert len(device.valid_tokens()) <= 2
