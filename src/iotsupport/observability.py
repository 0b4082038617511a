"""Request ids, one log line per request, and request metrics: all in hooks, none in views."""

from __future__ import annotations

import logging
import random
import re
import time
import typing as t

from flask import Flask
from flask import Response
from flask import g
from flask import request
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("iotsupport.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RequestMetrics:
    """Counts and times every request by method, URL rule and status."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "iotsupport_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "iotsupport_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )

    def record(
        self, method: str, path: str, route: str, status: int, elapsed: float, request_id: str
    ) -> None:
        """Count, time and log one answered request (the access log's one line)."""
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(elapsed)
        log.info(
            "%s %r route=%s status=%d duration_ms=%.1f request_id=%s",
            method,
            path[:256],
            route,
            status,
            elapsed * 1000,
            request_id,
        )


def request_id(given: str | None) -> str:
    """The client's X-Request-ID when it is a short, plain id; else a new one."""
    if given and _SAFE_REQUEST_ID.fullmatch(given):
        return given
    # 128 random bits without uuid4's system call on every request (seeded per process).
    return f"{random.getrandbits(128):032x}"


def _incoming_request_id() -> str:
    return request_id(request.headers.get(REQUEST_ID_HEADER))


def init_app(app: Flask, metrics: RequestMetrics) -> None:
    @app.before_request
    def _start_request() -> None:
        g.request_started = time.perf_counter()
        g.request_id = _incoming_request_id()

    @app.after_request
    def _finish_request(response: Response) -> Response:
        started: float | None = g.pop("request_started", None)
        if started is None:  # already recorded (Flask re-runs hooks after an error in one)
            return response
        elapsed = time.perf_counter() - started
        route = request.url_rule.rule if request.url_rule else "unmatched"
        answered_id = g.get("request_id") or _incoming_request_id()
        response.headers[REQUEST_ID_HEADER] = answered_id
        metrics.record(
            request.method, request.path, route, response.status_code, elapsed, answered_id
        )
        return response


class ConfigCountCollector(Collector):
    """`iotsupport_configs`: counted at scrape time, so every process reports the truth."""

    def __init__(self, count: t.Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> t.Iterator[Metric]:
        try:
            value = self._count()
        except (SQLAlchemyError, TimeoutError):
            return  # the scrape still answers; health reports the database
        yield GaugeMetricFamily("iotsupport_configs", "Number of device configs stored.", value)


class SyncStateCollector(Collector):
    """`iotsupport_configs_by_sync_state{state}`: whether devices have their current config."""

    def __init__(self, count: t.Callable[[], t.Mapping[str, int]]) -> None:
        self._count = count

    def collect(self) -> t.Iterator[Metric]:
        try:
            counts = self._count()
        except (SQLAlchemyError, TimeoutError):
            return
        family = GaugeMetricFamily(
            "iotsupport_configs_by_sync_state",
            "Configs by whether their device fetched the current version "
            "(in_sync, pending, never).",
            labels=["state"],
        )
        for state, value in counts.items():
            family.add_metric([state], value)
        yield family
