"""Log lines over MQTT: `iotsupport/devices/<mac>/logs`, read by every worker through one
MQTT 5 shared subscription, so that workers and replicas split the load.

Each worker has a persistent session (clean start off, a session expiry): while it is
down, the broker keeps what devices send at QoS 1 for it. Its client id must then be
the same after a restart: `<MQTT_CLIENT_ID_PREFIX>-logs-<host>-<slot>`, the slot being
the lowest number whose lock file this worker could take (workers of one host hold
0, 1, 2, ... and a restarted one takes a free one again).

A line from MQTT counts as verified only with broker device accounts
(MQTT_DEVICE_ACCOUNTS=dynsec), whose ACL lets a device publish to its own topic alone.
"""

from __future__ import annotations

import fcntl
import logging
import socket
import tempfile
import threading
import time
import typing as t
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from sqlalchemy import select

from iotsupport.configs.content import normalize_mac
from iotsupport.configs.tables import DeviceConfig
from iotsupport.device_logs.parsing import parse_payload
from iotsupport.settings import Settings

if t.TYPE_CHECKING:
    from iotsupport.device_logs import DeviceLogs

log = logging.getLogger(__name__)

LOG_TOPIC = "iotsupport/devices/+/logs"
SHARED_TOPIC = f"$share/iotsupport-logs/{LOG_TOPIC}"
SESSION_EXPIRY_SECONDS = 24 * 3600
MAX_PAYLOAD_BYTES = 256 * 1024
_MAC_TTL = 300.0
_C = DeviceConfig.__table__.c


def claim_slot(prefix: str) -> tuple[int, t.IO[bytes]]:
    """The lowest free slot of this host (its lock held while the file stays open)."""
    folder = Path(tempfile.gettempdir()) / f"{prefix}-log-slots"
    folder.mkdir(exist_ok=True)
    for slot in range(1024):
        handle = open(folder / f"{slot}.lock", "wb")  # noqa: SIM115 - held for life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError("no free log subscriber slot")


class LogSubscriber:
    def __init__(self, settings: Settings, logs: DeviceLogs) -> None:
        assert settings.mqtt_url
        url = urlsplit(settings.mqtt_url)
        self._host = url.hostname or "localhost"
        self._tls = url.scheme == "mqtts"
        self._port = url.port or (8883 if self._tls else 1883)
        self._settings = settings
        self._logs = logs
        self._verified = settings.mqtt_device_accounts == "dynsec"
        self._macs: dict[str, tuple[int | None, float]] = {}
        self._slot: t.IO[bytes] | None = None
        self._client: mqtt.Client | None = None
        self.subscribed = threading.Event()

    def start(self) -> None:
        prefix = self._settings.mqtt_client_id_prefix
        slot, self._slot = claim_slot(prefix)
        client_id = f"{prefix}-logs-{socket.gethostname()[:40]}-{slot}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if self._settings.mqtt_username:
            client.username_pw_set(self._settings.mqtt_username, self._settings.mqtt_password)
        if self._tls:
            client.tls_set()
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY_SECONDS
        client.connect_async(
            self._host, self._port, keepalive=30, clean_start=False, properties=properties
        )
        client.loop_start()
        self._client = client

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
        if self._slot is not None:
            self._slot.close()
            self._slot = None

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning("MQTT log reader: the broker refused the connection: %s", reason)
            return
        # Subscribing again on a kept session is harmless, and needed on a new one.
        client.subscribe(SHARED_TOPIC, qos=1)
        self.subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: t.Any) -> None:
        try:
            self.receive(message.topic, message.payload)
        except Exception as exc:  # never let one message end the reader
            log.warning("MQTT log message not taken: %s", type(exc).__name__)

    def receive(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 4 or len(payload) > MAX_PAYLOAD_BYTES:
            return
        try:
            mac = normalize_mac(parts[2])
        except ValueError:
            return
        config_id = self._config_id(mac)
        if config_id is None:
            return
        lines = parse_payload(payload, 10_000)
        self._logs.receive(config_id, lines, verified=self._verified)

    def _config_id(self, mac: str) -> int | None:
        now = time.monotonic()
        known = self._macs.get(mac)
        if known is not None and known[1] > now:
            return known[0]
        with self._logs.database.session(read_only=True) as session:
            config_id = session.execute(select(_C.id).where(_C.mac_address == mac)).scalar()
        if len(self._macs) > 100_000:
            self._macs.clear()
        self._macs[mac] = (config_id, now + _MAC_TTL)
        return config_id


def build_subscriber(settings: Settings, logs: DeviceLogs) -> LogSubscriber | None:
    if not settings.mqtt_url or not settings.log_mqtt:
        return None
    return LogSubscriber(settings, logs)
