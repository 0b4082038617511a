"""Rotation never bricks a device: whatever answers get lost and whenever it reboots.

The device saves a fresh token (in NVS) before it uses it; an answer lost on the
way, or a reboot before saving, leaves it with the token it had. Two proofs: every
sequence of up to 6 steps against the pure decision (`tokens.check`/`tokens.rotate`),
and a table of sequences through the real HTTP routes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import typing as t
from dataclasses import dataclass
from dataclasses import replace
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from conftest import DeviceAppFactory
from credentials_support import bearer
from credentials_support import create_device
from credentials_support import fetch
from credentials_support import issue
from credentials_support import rotate_own
from flask import Flask
from sqlalchemy import update

from iotsupport.credentials.tables import DeviceCredential
from iotsupport.credentials.tokens import CredentialState
from iotsupport.credentials.tokens import check
from iotsupport.credentials.tokens import new_token
from iotsupport.credentials.tokens import rotate
from iotsupport.credentials.tokens import token_hash
from iotsupport.db.base import utcnow
from iotsupport.extensions import state

MAC = "aa:bb:cc:dd:ee:01"
GRACE = timedelta(hours=168)

# ask: the device asks for a fresh token and saves the answer.
# ask_lost: it asks, the server answers, the answer never gets saved (lost, or a reboot).
# fetch: a request with the saved token (the first one with a fresh token retires the old).
# reboot: the device restarts (it keeps what it saved).
# wait: time passes, far beyond DEVICE_TOKEN_GRACE_HOURS.
# provisioned: an admin issues a token and puts it on the device (a new bundle).
Step = t.Literal["ask", "ask_lost", "fetch", "reboot", "wait", "provisioned"]
STEPS: tuple[Step, ...] = ("ask", "ask_lost", "fetch", "reboot", "wait", "provisioned")


# --- every sequence, against the pure decision ----------------------------------------------


@dataclass
class Model:
    """The server's credential state and the device's saved token, stepped by hand."""

    state: CredentialState
    held: str
    now: datetime

    @classmethod
    def fresh(cls) -> Model:
        token = new_token()
        state = CredentialState(1, MAC, token_hash(token), None, None, None)
        return cls(state, token, datetime(2026, 1, 1, tzinfo=UTC))

    def authenticate(self) -> bool:
        verdict = check(self.state, token_hash(self.held), self.now)
        if verdict.retire_previous:
            self.state = replace(self.state, previous_hash=None, previous_expires_at=None)
        return verdict.accepted

    def step(self, step: Step) -> None:
        if step in ("ask", "ask_lost"):
            assert self.authenticate()
            fresh = new_token()
            used = token_hash(self.held)
            self._rotated(rotate(self.state, token_hash(fresh), used=used, expires_at=None))
            if step == "ask":
                self.held = fresh
        elif step == "fetch":
            assert self.authenticate()
        elif step == "wait":
            self.now += GRACE * 10
        elif step == "provisioned":
            fresh = new_token()
            rotated = rotate(self.state, token_hash(fresh), used=None, expires_at=self.now + GRACE)
            self._rotated(rotated)
            self.held = fresh

    def _rotated(self, rotated: t.Any) -> None:
        self.state = replace(
            self.state,
            token_hash=rotated.token_hash,
            previous_hash=rotated.previous_hash,
            previous_expires_at=rotated.previous_expires_at,
        )


def test_no_sequence_of_up_to_six_steps_leaves_the_device_without_a_valid_token() -> None:
    checked = 0
    for length in range(1, 7):
        for sequence in itertools.product(STEPS, repeat=length):
            model = Model.fresh()
            for index, step in enumerate(sequence):
                model.step(step)
                assert check(model.state, token_hash(model.held), model.now).accepted, sequence[
                    : index + 1
                ]
            checked += 1
    assert checked == sum(len(STEPS) ** n for n in range(1, 7))


def test_the_pure_decision_retires_and_expires() -> None:
    model = Model.fresh()
    old = model.held
    model.step("provisioned")
    assert check(model.state, token_hash(old), model.now).accepted  # within the grace
    assert check(model.state, token_hash(old), model.now).used_previous
    model.now += GRACE + timedelta(seconds=1)
    assert not check(model.state, token_hash(old), model.now).accepted  # after it
    assert not check(None, token_hash(old), model.now).accepted
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
}


class Device:
    """A device against the real server: what it saved, and what the answers were."""

    def __init__(self, app: Flask, config_id: int, token: str) -> None:
        self.app = app
        self.client = app.test_client()
        self.config_id = config_id
        self.held = token
        self.issued: list[str] = [token]

    def step(self, step: Step) -> None:
        if step in ("ask", "ask_lost"):
            response = rotate_own(self.client, self.held)
            assert response.status_code == 200, response.get_data(as_text=True)
            fresh = response.get_json()["token"]
            self.issued.append(fresh)
            if step == "ask":
                self.held = fresh
        elif step == "fetch":
            assert fetch(self.client, MAC, bearer(self.held)).status_code == 200
        elif step == "wait":
            with state(self.app).database.session() as session:
                session.execute(
                    update(DeviceCredential)
                    .where(DeviceCredential.previous_expires_at.is_not(None))
                    .values(previous_expires_at=utcnow() - timedelta(seconds=1))
                )
                session.commit()
        elif step == "provisioned":
            self.held = issue(self.client, self.config_id)
            self.issued.append(self.held)

    def valid_tokens(self) -> list[str]:
        return [
            token
            for token in self.issued
            if fetch_status(self.app, token) == 200  # a read that changes nothing
        ]


def fetch_status(app: Flask, token: str) -> int:
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
    return 200 if check(stored, token_hash(token), now).accepted else 401


@pytest.mark.parametrize("sequence", list(SEQUENCES.values()), ids=list(SEQUENCES))
def test_rotation_sequences_over_http(device_app: DeviceAppFactory, sequence: list[Step]) -> None:
    app = device_app(device_auth="required")
    client = app.test_client()
    config_id = create_device(client, MAC)
    assert config_id == 1
    device = Device(app, config_id, issue(client, config_id))
    for index, step in enumerate(sequence):
        device.step(step)
        assert fetch_status(app, device.held) == 200, sequence[: index + 1]
        # Never more than two tokens work at once: the one held and at most one other.
        assert device.held in device.valid_tokens() and len(device.valid_tokens()) <= 2
    assert fetch(client, MAC, bearer(device.held)).status_code == 200
