"""The devices' desired topics, carried by one or a few MQTT connections.

Each connection subscribes to the retained `iotsupport/devices/<mac>/desired` of its
share of the devices (QoS 1); paho's network thread hands every message to the asyncio
loop, which passes it to its device. A real device keeps a connection of its own; for
the server this is the same (it publishes one retained message per device either way),
and the broker is spared a thousand sockets from one machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import typing as t
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotsupport.notifications import desired_topic

log = logging.getLogger(__name__)

OnDesired = Callable[[dict[str, t.Any]], None]
_SUBSCRIBE_BATCH = 100


class DesiredFeed:
    """Subscriptions of many devices over `connections` MQTT connections."""

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        connections: int = 1,
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "mqtts"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = username
        self.password = password
        self.count = max(1, connections)
        self._handlers: dict[str, OnDesired] = {}
        self._clients: list[mqtt.Client] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, mac_address: str, handler: OnDesired) -> None:
        self._handlers[desired_topic(mac_address)] = handler

    async def start(self, timeout: float = 30.0) -> None:
        """Connect, subscribe every device added so far, and wait for the acknowledgements."""
        self._loop = asyncio.get_running_loop()
        topics = list(self._handlers)
        shares = [topics[index :: self.count] for index in range(self.count)]
        waits = [await asyncio.to_thread(self._connect, share) for share in shares]
        for acknowledged in waits:
            if not await asyncio.to_thread(acknowledged.wait, timeout):
                raise TimeoutError(f"the MQTT broker at {self.host}:{self.port} did not answer")

    def stop(self) -> None:
        for client in self._clients:
            client.disconnect()
            client.loop_stop()
        self._clients.clear()

    def _connect(self, topics: Sequence[str]) -> threading.Event:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"iotsupport-sim-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set()
        done = threading.Event()
        pending = {"batches": -(-len(topics) // _SUBSCRIBE_BATCH)}
        if not topics:
            done.set()

        def connected(
            _c: mqtt.Client, _u: object, _f: object, reason: ReasonCode, _p: object
        ) -> None:
            if reason.is_failure:
                log.error("MQTT broker refused the simulator: %s", reason)
                return
            options = SubscribeOptions(qos=1)
            for start in range(0, len(topics), _SUBSCRIBE_BATCH):
                batch = topics[start : start + _SUBSCRIBE_BATCH]
                client.subscribe([(topic, options) for topic in batch])

        def subscribed(
            _c: mqtt.Client, _u: object, _mid: int, _codes: object, _p: Properties | None
        ) -> None:
            pending["batches"] -= 1
            if pending["batches"] <= 0:
                done.set()

        client.on_connect = connected
        client.on_subscribe = subscribed
        client.on_message = self._received
        client.connect(self.host, self.port, keepalive=60)
        client.loop_start()
        self._clients.append(client)
        return done

    def _received(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        handler = self._handlers.get(message.topic)
        if handler is None or not message.payload or self._loop is None:
            return  # not ours, or a cleared retained message
        try:
            payload = json.loads(message.payload)
        except ValueError:
            return
        if isinstance(payload, dict):
            self._loop.call_soon_threadsafe(handler, payload)
