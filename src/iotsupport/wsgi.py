"""The production entry point that `iotsupport serve` hands to Granian, once per worker.

`create_server_front` (what `serve` runs): the ASGI front (iotsupport/front) around
the app, whose lifespan starts and stops the worker's background threads.
`create_server_app`: the bare WSGI app, its threads started at once.
"""

from __future__ import annotations

import atexit
import logging
import threading
import typing as t
from multiprocessing import util

from flask import Flask

from iotsupport import create_app
from iotsupport.crashes.routes import DECODER_KEY
from iotsupport.extensions import state
from iotsupport.front.app import Front
from iotsupport.logs import configure_logging
from iotsupport.settings import Settings

log = logging.getLogger(__name__)


class _Part(t.Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


class Background:
    """The worker's background threads: publisher, device reports, device cache,
    rollouts, the outbox relay, broker accounts. Each stop runs once, whoever asks
    first."""

    def __init__(self, app: Flask) -> None:
        app_state = state(app)
        self.parts: tuple[_Part, ...] = (
            app_state.publisher,
            app_state.reports,  # check-ins, firmware versions, credential uses
            app_state.devices.cache,  # device fetches from memory once loaded
            app_state.rollouts,  # advances active rollouts from the devices' reports
            app_state.outbox,  # publishes announcements (one process of all at a time)
            app_state.accounts,  # device broker accounts (MQTT_DEVICE_ACCOUNTS=dynsec)
            app.extensions[DECODER_KEY],  # decodes core dumps, pending ones after a restart
            *([app_state.logs] if app_state.logs else []),  # retention, MQTT log reader
        )
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        for part in self.parts:
            part.start()
        # A worker process ends through multiprocessing, which skips atexit handlers
        # but runs its own finalizers; either way the last reports get written.
        atexit.register(self.stop)
        util.Finalize(self, self.stop, exitpriority=10)

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for part in reversed(self.parts):  # the last started stops first
            try:
                part.stop()
            except Exception:  # the others must still stop
                log.exception("stopping %s failed", type(part).__name__)


def _server_app() -> tuple[Flask, Background]:
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    if state(app).publisher.state == "disabled":
        log.info("MQTT_URL is not set: change notifications are off")
    return app, Background(app)


def create_server_app() -> Flask:
    app, background = _server_app()
    background.start()
    return app


def create_server_front() -> Front:
    app, background = _server_app()
    threads = state(app).settings.threads
    return Front(app, threads, on_startup=background.start, on_shutdown=background.stop)
