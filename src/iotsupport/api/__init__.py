"""HTTP layer: one blueprint a resource. Routes parse and answer; services decide."""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import Response
from pydantic import BaseModel
from werkzeug.exceptions import NotFound
from werkzeug.routing import IntegerConverter

from iotsupport.api.access import current_actor
from iotsupport.db import get_session
from iotsupport.extensions import state
from iotsupport.models.base import MAX_INT
from iotsupport.services.configs import ConfigService
from iotsupport.services.history import HistoryService


def json_response(body: BaseModel | str | t.Iterable[bytes], status: int = 200) -> Response:
    """A JSON answer: a schema (serialized here), or JSON text the schemas module built."""
    if isinstance(body, BaseModel):
        body = body.model_dump_json()
    return Response(body, status=status, mimetype="application/json")


def config_service() -> ConfigService:
    """The request's config service; its changes are recorded as made by the caller."""
    keep = state().settings.history_keep_versions
    return ConfigService(
        get_session(), state().publisher, actor=current_actor(), keep_versions=keep
    )


def history_service() -> HistoryService:
    return HistoryService(get_session(), keep_versions=state().settings.history_keep_versions)


class DatabaseIntConverter(IntegerConverter):
    """`<int:...>` in our URLs: ids and versions are 32-bit in the database, so a larger
    number is a 404 at routing, never an overflowing query.

    Raising NotFound here (rather than a failed match) keeps werkzeug from answering a
    misleading 405 when another method of the same path exists.
    """

    def to_python(self, value: str) -> int:
        number: int = super().to_python(value)
        if number > MAX_INT:
            raise NotFound()
        return number


def register_blueprints(app: Flask) -> None:
    app.url_map.converters["int"] = DatabaseIntConverter  # before any rule is added
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
