"""The production entry point that `iotsupport serve` hands to Granian, once per worker."""

from __future__ import annotations

import atexit
import logging
from multiprocessing import util

from flask import Flask

from iotsupport import create_app
from iotsupport.extensions import state
from iotsupport.logs import configure_logging
from iotsupport.settings import Settings

log = logging.getLogger(__name__)


def create_server_app() -> Flask:
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    publisher = state(app).publisher
    publisher.start()
    atexit.register(publisher.stop)
    reports = state(app).reports  # check-ins, firmware versions, credential uses
    reports.start()
    # A worker process ends through multiprocessing, which skips atexit handlers
    # but runs its own finalizers; either way the last reports get written.
    atexit.register(reports.stop)
    util.Finalize(reports, reports.stop, exitpriority=10)
    device_cache = state(app).devices.cache  # device fetches from memory once loaded
    device_cache.start()
    atexit.register(device_cache.stop)
    rollouts = state(app).rollouts  # advances active rollouts from the devices' reports
    rollouts.start()
    atexit.register(rollouts.stop)
    outbox = state(app).outbox  # publishes announcements (one process of all at a time)
    outbox.start()
    atexit.register(outbox.stop)
    accounts = state(app).accounts  # device broker accounts (MQTT_DEVICE_ACCOUNTS=dynsec)
    accounts.start()
    atexit.register(accounts.stop)
    for health in (state(app).health_listener, state(app).health_downsampler):
        if health is not None:  # device health over MQTT; samples folded into hours
            health.start()
            atexit.register(health.stop)
    if publisher.state == "disabled":
        log.info("MQTT_URL is not set: change notifications are off")
    return app
