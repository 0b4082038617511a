"""Mosquitto's dynamic-security plugin, as the server talks to it: the control topic,
a device's role and ACLs, and the token sealed while it waits to be sent."""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import typing as t
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from paho.mqtt.enums import CallbackAPIVersion

from iotsupport.settings import Settings

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
ROLE_PREFIX = "iotsupport-device-"
# What no ACL allows is denied, for every account (the plugin's own default lets a client
# receive anything and unsubscribe from anything). The server's own account keeps what
# it needs through its role (README "Device credentials": the dynsec admin role, which
# receives the control answers, and publishClientSend on `iotsupport/#`).
DEFAULT_ACL_ACCESS = [
    {"acltype": acltype, "allow": False}
    for acltype in ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe")
]


def role_name(mac: str) -> str:
    return ROLE_PREFIX + mac


def device_acls(mac: str) -> list[dict[str, t.Any]]:
    own = f"iotsupport/devices/{mac}"
    return [
        {"acltype": acltype, "topic": topic, "allow": True}
        for topic in (f"{own}/#", "iotsupport/updates/#")
        for acltype in ("subscribePattern", "publishClientReceive", "unsubscribePattern")
    ] + [
        # What the device reports: its state, its health, its status (`online` retained at
        # connect, `offline` as its will, which the broker checks against this at connect).
        {"acltype": "publishClientSend", "topic": topic, "allow": True}
        for topic in (f"{own}/reported/#", f"{own}/health", f"{own}/status")
    ]


def device_client_id(mac: str) -> str:
    """The MQTT client id a device's account may connect with: its MAC, as its user name
    (one account, one session: no device can take over another's)."""
    return mac


class Sealer:
    """AES-GCM with a key derived from MQTT_PASSWORD: a database dump alone opens nothing."""

    def __init__(self, secret: str) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"iotsupport",
            info=b"broker account changes",
        ).derive(secret.encode())
        self._aead = AESGCM(key)

    def seal(self, username: str, token: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, token.encode(), username.encode())
        return base64.b64encode(nonce + sealed).decode()

    def unseal(self, username: str, sealed: str) -> str | None:
        """None when it cannot be opened (MQTT_PASSWORD changed since)."""
        try:
            raw = base64.b64decode(sealed)
            return self._aead.decrypt(raw[:12], raw[12:], username.encode()).decode()
        except (InvalidTag, ValueError):
            return None


class BrokerRefused(Exception):
    """The broker answered a command with an error we cannot accept."""


class Unsealable(Exception):
    """The sealed token cannot be opened (MQTT_PASSWORD changed since it was sealed)."""


class DynsecClient:
    """A connection of our own to the broker's control topic; commands with their answers."""

    def __init__(self, settings: Settings, timeout: float = 3.0) -> None:
        assert settings.mqtt_url
        url = urlsplit(settings.mqtt_url)
        self._host = url.hostname or "localhost"
        tls = url.scheme == "mqtts"
        self._port = url.port or (8883 if tls else 1883)
        self._timeout = timeout
        self._answers: dict[str, dict[str, t.Any]] = {}
        self._arrived = threading.Condition()
        self._ready = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{settings.mqtt_client_id_prefix}-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if tls:
            self._client.tls_set()
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = lambda *_: self._ready.clear()
        self._client.on_subscribe = lambda *_: self._ready.set()
        self._client.on_message = self._on_message
        self._started = False

    def call(self, commands: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
        """Send the commands; their answers in order. OSError/TimeoutError if the broker is away."""
        self._connect()
        ids = [uuid.uuid4().hex for _ in commands]
        for command, correlation in zip(commands, ids, strict=True):
            command["correlationData"] = correlation
        info = self._client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"control command not sent: {mqtt.error_string(info.rc)}")
        with self._arrived:
            if not self._arrived.wait_for(
                lambda: all(i in self._answers for i in ids), self._timeout
            ):
                raise TimeoutError("the broker did not answer the control command")
            return [self._answers.pop(i) for i in ids]

    def deny_by_default(self) -> None:
        """Deny what no ACL allows, for every account."""
        checked(self.call([{"command": "setDefaultACLAccess", "acls": DEFAULT_ACL_ACCESS}]))

    def set_account(self, mac: str, password: str) -> None:
        """The device's account with this password, bound to its client id, and its role."""
        role, acls, client_id = role_name(mac), device_acls(mac), device_client_id(mac)
        answer = self.call([{"command": "createRole", "rolename": role, "acls": acls}])
        if checked(answer, tolerated=("already exists",)):
            # A role made by an older version: it gains what it lacks.
            add = [{"command": "addRoleACL", "rolename": role, **acl} for acl in acls]
            checked(self.call(add), tolerated=("already exists",))
        account = {"username": mac, "password": password, "clientid": client_id}
        created = self.call([{"command": "createClient", **account, "roles": [{"rolename": role}]}])
        if checked(created, tolerated=("already exists",)):
            # The account exists (with its role, given at creation): a new password, and
            # the client id (an account made by an older version had none).
            checked(
                self.call(
                    [
                        {"command": "setClientPassword", "username": mac, "password": password},
                        {"command": "setClientId", "username": mac, "clientid": client_id},
                    ]
                )
            )

    def delete_account(self, mac: str) -> None:
        commands = [
            {"command": "deleteClient", "username": mac},
            {"command": "deleteRole", "rolename": role_name(mac)},
        ]
        checked(self.call(commands), tolerated=("not found",))

    def close(self) -> None:
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False

    def _connect(self) -> None:
        if not self._started:
            self._client.connect_async(self._host, self._port, keepalive=30)
            self._client.loop_start()
            self._started = True
        if not self._ready.wait(self._timeout):
            raise TimeoutError(f"no connection to the broker at {self._host}:{self._port}")

    def _on_connect(self, client: mqtt.Client, *args: t.Any) -> None:
        reason = args[2]
        if reason.is_failure:
            log.warning("dynsec: the broker refused our login: %s", reason)
            return
        client.subscribe(RESPONSE_TOPIC, qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            responses = json.loads(message.payload).get("responses", [])
        except (ValueError, AttributeError):
            return
        with self._arrived:
            for response in responses:
                if isinstance(response, dict) and "correlationData" in response:
                    self._answers[str(response["correlationData"])] = response
            self._arrived.notify_all()


def checked(answers: list[dict[str, t.Any]], tolerated: tuple[str, ...] = ()) -> list[str]:
    """The errors of `answers` that are tolerated (e.g. "already exists"); raise on others."""
    seen = []
    for answer in answers:
        error = answer.get("error")
        if not error:
            continue
        if not any(text in str(error) for text in tolerated):
            raise BrokerRefused(f"{answer.get('command')}: {error}")
        seen.append(str(error))
    return seen
