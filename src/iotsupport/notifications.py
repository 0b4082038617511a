"""Change notifications over MQTT: one long-lived connection per process.

Requests never publish: what a commit announces is written to the outbox in the same
transaction, and one relay at a time (outbox/relay.py) publishes it through this
connection and waits for the broker's PUBACK (`wait_acknowledged`). paho's own thread
sends, reconnects when needed, and resends what was not acknowledged, in order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import typing as t
import uuid
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import CollectorRegistry
from prometheus_client import Counter

from iotsupport.settings import Settings

log = logging.getLogger(__name__)

CONFIGS_TOPIC = "iotsupport/updates/configs"
ASSETS_TOPIC = "iotsupport/updates/assets"

DEVICE_TOPIC_ROOT = "iotsupport/devices"

MqttState = t.Literal["connected", "disconnected", "disabled"]
Payload = t.Mapping[str, t.Any]
_DEVICE_TOPICS = f"{DEVICE_TOPIC_ROOT}/"


def desired_topic(mac_address: str) -> str:
    """The device's retained desired state (desired.py builds it)."""
    return f"{DEVICE_TOPIC_ROOT}/{mac_address}/desired"


def topic_label(topic: str) -> str:
    """The metric label of a topic: per-device topics share one (`iotsupport/devices/+/...`)."""
    if topic.startswith(_DEVICE_TOPICS):
        _, _, rest = topic[len(_DEVICE_TOPICS) :].partition("/")
        return f"{_DEVICE_TOPICS}+/{rest}"
    return topic


class NotQueued(RuntimeError):
    """paho refused to queue a message (its queue is full)."""


class Publisher(t.Protocol):
    """What the services need from a notifier; tests pass an in-memory one."""

    @property
    def state(self) -> MqttState: ...

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        """QoS 1; `retain` keeps it on the broker for later subscribers. NotQueued when
        the message could not even be queued."""

    def clear_retained(self, topic: str) -> None:
        """Remove the topic's retained message (an empty retained payload)."""

    def wait_acknowledged(self, timeout: float) -> bool:
        """True once the broker has acknowledged every message handed over so far;
        False after `timeout` seconds."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class PublishMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.outcomes = Counter(
            "iotsupport_mqtt_publish",
            "MQTT notifications by topic and outcome: sent (to the socket), queued "
            "(broker away, sent on reconnect), dropped (queue full), disabled.",
            ["topic", "outcome"],
            registry=registry,
        )
        self.acknowledged = Counter(
            "iotsupport_mqtt_acknowledged",
            "MQTT notifications the broker acknowledged (PUBACK).",
            registry=registry,
        )


class DisabledPublisher:
    """Used when MQTT_URL is unset: publishing is off and nothing fails."""

    def __init__(self, metrics: PublishMetrics) -> None:
        self._metrics = metrics

    @property
    def state(self) -> MqttState:
        return "disabled"

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        self._metrics.outcomes.labels(topic_label(topic), "disabled").inc()

    def clear_retained(self, topic: str) -> None:
        self._metrics.outcomes.labels(topic_label(topic), "disabled").inc()

    def wait_acknowledged(self, timeout: float) -> bool:
        return True

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class MqttPublisher:
    """paho-mqtt client, MQTT 5, QoS 1, reconnecting by itself."""

    def __init__(self, settings: Settings, metrics: PublishMetrics, max_queued: int = 10_000):
        assert settings.mqtt_url
        url = urlsplit(settings.mqtt_url)
        self._host = url.hostname or "localhost"
        self._tls = url.scheme == "mqtts"
        self._port = url.port or (8883 if self._tls else 1883)
        self._metrics = metrics
        self._connected = threading.Event()
        self._last_info: mqtt.MQTTMessageInfo | None = None
        # Message ids handed to paho and not acknowledged yet. A PUBACK may arrive before
        # publish() returns its id (`_early`): paho calls on_publish under its own lock,
        # so this one is never held while calling into paho.
        self._acks = threading.Condition()
        self._unacked: set[int] = set()
        self._early: set[int] = set()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"{settings.mqtt_client_id_prefix}-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        if self._tls:
            self._client.tls_set()
        self._client.max_queued_messages_set(max_queued)
        self._client.reconnect_delay_set(min_delay=1, max_delay=30)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    @property
    def state(self) -> MqttState:
        return "connected" if self._connected.is_set() else "disconnected"

    def start(self) -> None:
        # connect_async + loop_start: no blocking here even if the broker is away.
        self._client.connect_async(self._host, self._port, keepalive=30)
        self._client.loop_start()

    def stop(self, flush_seconds: float = 3.0) -> None:
        """Give queued messages a moment to reach the broker, then disconnect."""
        deadline = time.monotonic() + flush_seconds
        if self._last_info is not None and self._connected.wait(flush_seconds):
            try:
                self._last_info.wait_for_publish(timeout=max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                log.warning("MQTT: stopped before every notification was delivered")
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: Payload, *, retain: bool = False) -> None:
        self._send(topic, json.dumps(payload).encode(), retain)

    def clear_retained(self, topic: str) -> None:
        self._send(topic, b"", True)

    def _send(self, topic: str, payload: bytes, retain: bool) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            outcome = "sent"
        elif info.rc == mqtt.MQTT_ERR_NO_CONN:
            outcome = "queued"  # paho keeps QoS 1 messages and sends them on reconnect
        else:
            outcome = "dropped"
            log.warning("MQTT publish to %s dropped: %s", topic, mqtt.error_string(info.rc))
        self._metrics.outcomes.labels(topic_label(topic), outcome).inc()
        if outcome == "dropped":
            raise NotQueued(f"MQTT publish not queued: {mqtt.error_string(info.rc)}")
        with self._acks:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._unacked.add(info.mid)
        self._last_info = info

    def wait_acknowledged(self, timeout: float) -> bool:
        with self._acks:
            return self._acks.wait_for(lambda: not self._unacked, timeout)

    def _on_connect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if reason.is_failure:
            log.warning(
                "MQTT broker %s:%s refused the connection: %s", self._host, self._port, reason
            )
            return
        log.info("MQTT connected to %s:%s", self._host, self._port)
        self._connected.set()

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _props: Properties | None,
    ) -> None:
        if self._connected.is_set():
            log.warning("MQTT disconnected (%s); reconnecting in the background", reason)
        self._connected.clear()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        _reason: ReasonCode,
        _props: Properties,
    ) -> None:
        self._metrics.acknowledged.inc()
        with self._acks:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)
            self._acks.notify_all()


def build_publisher(settings: Settings, registry: CollectorRegistry) -> Publisher:
    metrics = PublishMetrics(registry)
    if settings.mqtt_url:
        return MqttPublisher(settings, metrics)
    return DisabledPublisher(metrics)
