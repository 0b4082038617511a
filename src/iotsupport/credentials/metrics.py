"""The device requests' counter (iotsupport_device_requests_total)."""

from __future__ import annotations

import typing as t

from prometheus_client import CollectorRegistry
from prometheus_client import Counter


class DeviceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "iotsupport_device_requests",
            "Device requests by route and credential: valid, signed (a signed URL), none "
            "(served without one, DEVICE_AUTH=optional), refused (401, 403), limited (429).",
            ["route", "credential"],
            registry=registry,
        )
        # The labelled children, looked up once each: this runs on every device request.
        self._children: dict[tuple[str, str], t.Any] = {}

    def count(self, route: str, credential: str) -> None:
        child = self._children.get((route, credential))
        if child is None:
            child = self._children[(route, credential)] = self.requests.labels(route, credential)
        child.inc()
