"""The long-lived collaborators create_app builds once, and their typed accessor."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask
from flask import current_app
from prometheus_client import CollectorRegistry

from iotsupport.assets.service import Assets
from iotsupport.assets.signing import UploadVerifier
from iotsupport.configs.list_columns import ListColumns
from iotsupport.configs.reports import DeviceReports
from iotsupport.credentials.accounts import BrokerAccounts
from iotsupport.credentials.device_auth import DeviceGate
from iotsupport.db import Database
from iotsupport.health.downsample import Downsampler
from iotsupport.health.mqtt import HealthListener
from iotsupport.images import ImageProxy
from iotsupport.notifications import Publisher
from iotsupport.outbox.relay import Relay
from iotsupport.releases.cache import FileCache
from iotsupport.rollouts.ticker import RolloutTicker
from iotsupport.settings import Settings

EXTENSION_KEY = "iotsupport"


@dataclass
class AppState:
    settings: Settings
    database: Database
    publisher: Publisher
    scrape_registry: CollectorRegistry  # what /metrics exposes
    reports: DeviceReports  # what devices report (device_reports/), written in the background
    image_proxy: ImageProxy
    devices: DeviceGate  # device authentication (DEVICE_AUTH) and credential uses
    accounts: BrokerAccounts  # the devices' broker accounts (MQTT_DEVICE_ACCOUNTS)
    rollouts: RolloutTicker  # advances active rollouts (started by wsgi, like reports)
    outbox: Relay  # publishes what commits announce (started by wsgi)
    assets: Assets | None = None  # None: ASSETS_DIR unset, asset endpoints answer 503
    release_cache: FileCache | None = None  # None: RELEASE_CACHE_MAX_BYTES=0
    release_verifier: UploadVerifier | None = None  # None: SIGNING_KEY_PATH unset
    # Other features' columns of a config and the list (health: online, last_seen_at).
    device_columns: tuple[ListColumns, ...] = ()
    health_listener: HealthListener | None = None  # device health and status over MQTT
    health_downsampler: Downsampler | None = None  # raw samples into hours (wsgi starts it)


def state(app: Flask | None = None) -> AppState:
    app_state: AppState = (app or current_app).extensions[EXTENSION_KEY]
    return app_state
