"""Health and status messages from devices over MQTT: one subscriber per process.

`$share/<prefix>-health/iotsupport/devices/+/health` and `.../+/status`: an MQTT 5 shared
subscription, so that each message goes to one process of all, and a persistent session
(clean start off, kept SESSION_EXPIRY_SECONDS), so that QoS 1 messages sent while this
process was briefly away wait on the broker. A message counts as verified only with
MQTT_DEVICE_ACCOUNTS=dynsec: then the broker's ACL lets only the device's own account
publish under its MAC. Junk is refused with a count (`iotsupport_health_reports_refused`).

A shared subscription gets no retained message at subscribe (MQTT 5): a device's
retained `online` from before the server subscribed shows once it reconnects, or as its
last contact meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
import typing as t
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from sqlalchemy import select

from iotsupport.configs.tables import DeviceConfig
from iotsupport.db import Database
from iotsupport.health.kinds import Status
from iotsupport.health.reports import HealthReport
from iotsupport.health.reports import Refused
from iotsupport.health.reports import from_message
from iotsupport.notifications import DEVICE_TOPIC_ROOT
from iotsupport.settings import Settings

log = logging.getLogger(__name__)

SESSION_EXPIRY_SECONDS = 3600
_UNKNOWN_FOR = 60.0  # seconds a MAC with no config is not looked up again
_MAX_KNOWN = 100_000
_MAC_LENGTH = 17


class Reports(t.Protocol):
    """What the subscriber hands messages to (the one intake)."""

    def health_reported(self, config_id: int, report: HealthReport) -> None: ...

    def status_reported(self, config_id: int, status: Status) -> None: ...

    @property
    def refused(self) -> t.Any: ...


def health_topic(mac: str) -> str:
    return f"{DEVICE_TOPIC_ROOT}/{mac}/health"


def status_topic(mac: str) -> str:
    return f"{DEVICE_TOPIC_ROOT}/{mac}/status"


class HealthListener:
    """MQTT subscriber of device health and status (started by wsgi; off without MQTT_URL)."""

    def __init__(self, settings: Settings, database: Database, reports: Reports) -> None:
        self._settings = settings
        self._database = database
        self._reports = reports
        self.verified = settings.mqtt_device_accounts == "dynsec"
        self._group = f"{settings.mqtt_client_id_prefix}-health"
        self._known: dict[str, int] = {}
        self._unknown: dict[str, float] = {}
        self._lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self.subscribed = threading.Event()

    def start(self) -> None:
        url = self._settings.mqtt_url
        if url is None or self._client is not None:
            return
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{self._group}-{uuid.uuid4().hex[:12]}",  # one session per process
            protocol=mqtt.MQTTv5,
        )
        if self._settings.mqtt_username:
            client.username_pw_set(self._settings.mqtt_username, self._settings.mqtt_password)
        if tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        client.connect_async(
            parts.hostname or "localhost",
            parts.port or (8883 if tls else 1883),
            keepalive=30,
            clean_start=False,
            properties=properties,
        )
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_connect(
        self, client: mqtt.Client, _u: object, _f: object, reason: t.Any, *_: t.Any
    ) -> None:
        if reason.is_failure:
            log.warning("health subscriber: the broker refused the connection: %s", reason)
            return
        topics = [
            f"$share/{self._group}/{DEVICE_TOPIC_ROOT}/+/{leaf}" for leaf in ("health", "status")
        ]
        client.subscribe([(topic, 1) for topic in topics])

    def _on_subscribe(self, *_: t.Any) -> None:
        self.subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        try:
            self.handle(message.topic, bytes(message.payload))
        except Exception:  # paho's thread must outlive any surprise
            log.exception("health subscriber: a message was not handled")

    def handle(self, topic: str, payload: bytes) -> None:
        """One message of a device's health or status topic."""
        root, _, rest = topic.partition(f"{DEVICE_TOPIC_ROOT}/")
        mac, _, leaf = rest.partition("/")
        refused = self._reports.refused
        if (
            root
            or len(mac) != _MAC_LENGTH
            or mac != mac.lower()
            or leaf not in ("health", "status")
        ):
            refused.labels("mqtt", "topic").inc()
            return
        config_id = self._config_id(mac)
        if config_id is None:
            refused.labels("mqtt", "unknown_device").inc()
            return
        if leaf == "status":
            if payload not in (b"online", b"offline"):
                refused.labels("mqtt", "status").inc()
                return
            status = Status(payload == b"online", time.time(), self.verified)
            self._reports.status_reported(config_id, status)
            return
        try:
            report = from_message(payload, verified=self.verified)
        except Refused as exc:
            refused.labels("mqtt", exc.field).inc()
            return
        self._reports.health_reported(config_id, report)

    def _config_id(self, mac: str) -> int | None:
        with self._lock:
            known = self._known.get(mac)
            if known is not None:
                return known
            if self._unknown.get(mac, 0.0) > time.monotonic():
                return None
        with self._database.session() as session:
            config_id = session.scalar(
                select(DeviceConfig.id).where(DeviceConfig.mac_address == mac)
            )
        with self._lock:
            if config_id is None:
                if len(self._unknown) > _MAX_KNOWN:
                    self._unknown.clear()
                self._unknown[mac] = time.monotonic() + _UNKNOWN_FOR
            else:
                if len(self._known) > _MAX_KNOWN:
                    self._known.clear()
                self._known[mac] = config_id
        return config_id
