"""IoTSupport: configuration and firmware server for a fleet of ESP32 devices."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

from flask import Flask
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from iotsupport import auth
from iotsupport import compression
from iotsupport import db
from iotsupport import errors
from iotsupport import observability
from iotsupport.api import protections
from iotsupport.api import register_blueprints
from iotsupport.assets.service import build_assets
from iotsupport.assets.service import build_verifier
from iotsupport.assets.signing import RELEASE_PURPOSE
from iotsupport.configs.checkins import count_by_sync_state
from iotsupport.configs.service import ConfigService
from iotsupport.credentials.device_auth import DeviceGate
from iotsupport.credentials.dynsec import build_accounts
from iotsupport.db import Database
from iotsupport.device_cache import build_device_cache
from iotsupport.device_cache.fast_path import DeviceFetchFastPath
from iotsupport.device_reports import DeviceReportIntake
from iotsupport.extensions import EXTENSION_KEY
from iotsupport.extensions import AppState
from iotsupport.health.downsample import Downsampler
from iotsupport.health.mqtt import HealthListener
from iotsupport.health.presence import Presence
from iotsupport.images import ImageProxy
from iotsupport.notifications import Publisher
from iotsupport.notifications import build_publisher
from iotsupport.outbox.relay import OutboxCollector
from iotsupport.outbox.relay import Relay
from iotsupport.outbox.relay import backlog
from iotsupport.releases.cache import build_release_cache
from iotsupport.rollouts.ticker import RolloutTicker
from iotsupport.settings import Settings

__all__ = ["create_app"]


def create_app(
    settings: Settings | None = None,
    *,
    publisher: Publisher | None = None,
    registry: CollectorRegistry | None = None,
) -> Flask:
    """Build the app. Nothing connects to the MQTT broker until `publisher.start()` (and
    `accounts.start()`), device reports (check-ins, credential uses) are only written by
    `reports.flush()` until `reports.start()`, except the urgent ones (a firmware version
    that changed), which are written when they arrive; and rollouts
    advance only by requests and `rollouts.evaluate_all()` until `rollouts.start()`.

    Raises StartupError when a setting is unusable (e.g. SIGNING_KEY_PATH).
    """
    settings = settings or Settings()
    if settings.prometheus_multiproc_dir:
        # Samples are written there from the first metric on; it may not exist yet.
        Path(settings.prometheus_multiproc_dir).mkdir(parents=True, exist_ok=True)
    registry = registry or CollectorRegistry()
    assets = build_assets(settings, registry)
    database = Database(settings)
    publisher = publisher or build_publisher(settings, registry)

    app = Flask(__name__)
    app.config["VERSION"] = version("iotsupport")
    app.config["MAX_REQUEST_BYTES"] = settings.max_request_bytes
    # One byte more, so that a chunked body over the limit is refused, never cut short
    # (api/spec.py::request_body).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes + 1
    app.json.sort_keys = False  # type: ignore[attr-defined]

    def count_configs() -> int:
        return database.call_with_deadline(lambda session: ConfigService(session).count())

    # Several worker processes: /metrics reads every worker's samples from disk.
    if settings.prometheus_multiproc_dir:
        scrape_registry = CollectorRegistry()
        MultiProcessCollector(scrape_registry, settings.prometheus_multiproc_dir)  # type: ignore[no-untyped-call]
    else:
        scrape_registry = registry
    scrape_registry.register(observability.ConfigCountCollector(count_configs))
    scrape_registry.register(
        observability.SyncStateCollector(lambda: database.call_with_deadline(count_by_sync_state))
    )
    scrape_registry.register(OutboxCollector(lambda: database.call_with_deadline(backlog)))
    outbox = Relay(settings, database, publisher, registry)
    rollouts = RolloutTicker(settings, database)
    reports = DeviceReportIntake(
        database.session,
        registry,
        interval=settings.checkin_flush_seconds,
        trusted_proxies=settings.trusted_networks,
        on_written=rollouts.wake,  # device reports written: rollouts may advance
    )
    accounts = build_accounts(settings, database, registry)
    device_cache = build_device_cache(settings, database, registry)
    devices = DeviceGate(settings, database, accounts, registry, device_cache, reports)
    app.extensions[EXTENSION_KEY] = AppState(
        settings,
        database,
        publisher,
        scrape_registry,
        reports=reports,
        image_proxy=ImageProxy(settings, registry),
        devices=devices,
        accounts=accounts,
        rollouts=rollouts,
        outbox=outbox,
        assets=assets,
        release_cache=build_release_cache(settings),
        release_verifier=build_verifier(settings, purpose=RELEASE_PURPOSE),
        device_columns=(Presence(settings.offline_after_seconds),),
        health_listener=HealthListener(settings, database, reports),
        health_downsampler=Downsampler(database),
    )
    # Hook order matters: Flask runs after_request hooks last-registered first,
    # so the commit runs before the access log records the final status.
    request_metrics = observability.RequestMetrics(registry)
    observability.init_app(app, request_metrics)
    hosts = protections.host_rule(settings)
    protections.init_app(app, hosts)
    db.init_app(app)
    errors.init_app(app)
    auth.init_app(app, settings)
    register_blueprints(app)
    # Innermost first: a device fetch from memory skips Flask, and is compressed as any.
    app.wsgi_app = DeviceFetchFastPath(  # type: ignore[method-assign]
        app.wsgi_app, devices, reports, request_metrics, hosts
    )
    app.wsgi_app = compression.Compression(app.wsgi_app)  # type: ignore[method-assign]

    from iotsupport.cli import register_commands

    register_commands(app)
    return app
