"""HTTP layer: one blueprint a resource. Routes parse and answer; services decide."""

from __future__ import annotations

from flask import Flask

from iotsupport.api.access import current_actor
from iotsupport.db import get_session
from iotsupport.extensions import state
from iotsupport.services.configs import ConfigService
from iotsupport.services.history import HistoryService


def config_service() -> ConfigService:
    """The request's config service; its changes are recorded as made by the caller."""
    keep = state().settings.history_keep_versions
    return ConfigService(
        get_session(), state().publisher, actor=current_actor(), keep_versions=keep
    )


def history_service() -> HistoryService:
    return HistoryService(get_session(), keep_versions=state().settings.history_keep_versions)


def register_blueprints(app: Flask) -> None:
    from iotsupport import ui
    from iotsupport.api import assets
    from iotsupport.api import auth
    from iotsupport.api import configs
    from iotsupport.api import docs
    from iotsupport.api import history
    from iotsupport.api import images
    from iotsupport.api import operations

    app.register_blueprint(auth.bp)
    app.register_blueprint(configs.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(history.bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(ui.bp)
