"""HTTP plumbing every domain shares: JSON answers, URL converters, the blueprint list.

Each domain package (configs, assets, images, auth, ...) has its own `routes.py`;
routes parse and answer, the domain's services decide."""

from __future__ import annotations

import typing as t

from flask import Flask
from flask import Response
from pydantic import BaseModel
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter
from werkzeug.routing import IntegerConverter
from werkzeug.routing import PathConverter

from iotsupport.assets.names import FILENAME_DESCRIPTION
from iotsupport.assets.names import FILENAME_PATTERN
from iotsupport.configs.content import MAC_DESCRIPTION
from iotsupport.configs.content import MAC_PATTERN
from iotsupport.db.base import MAX_INT


def json_response(body: BaseModel | str | t.Iterable[bytes], status: int = 200) -> Response:
    """A JSON answer: a schema (serialized here), or JSON text the schemas module built."""
    if isinstance(body, BaseModel):
        body = body.model_dump_json()
    return Response(body, status=status, mimetype="application/json")


class DatabaseIntConverter(IntegerConverter):
    """`<int:...>` in our URLs: ids and versions are 32-bit in the database, so a larger
    number is a 404 at routing, never an overflowing query.

    Raising NotFound here (rather than a failed match) keeps werkzeug from answering a
    misleading 405 when another method of the same path exists.
    """

    openapi: t.ClassVar[dict[str, t.Any]] = {"type": "integer", "minimum": 0, "maximum": MAX_INT}

    def to_python(self, value: str) -> int:
        number: int = super().to_python(value)
        if number > MAX_INT:
            raise NotFound()
        return number


class MacConverter(BaseConverter):
    """`<mac:...>`: any one segment reaches the view, which answers 400 for a malformed
    MAC (never a 404); the OpenAPI document states the rule as a pattern."""

    openapi: t.ClassVar[dict[str, t.Any]] = {
        "type": "string",
        "pattern": MAC_PATTERN,
        "description": MAC_DESCRIPTION,
    }


class FilenameConverter(PathConverter):
    """`<filename:...>`: slashes included, so that such a name gets its 400 from the rule."""

    openapi: t.ClassVar[dict[str, t.Any]] = {
        "type": "string",
        "pattern": FILENAME_PATTERN,
        "description": FILENAME_DESCRIPTION,
    }


def register_blueprints(app: Flask) -> None:
    # Before any rule is added.
    app.url_map.converters.update(
        int=DatabaseIntConverter, mac=MacConverter, filename=FilenameConverter
    )
    from iotsupport import ui
    from iotsupport.api import docs
    from iotsupport.api import operations
    from iotsupport.assets import routes as assets
    from iotsupport.auth import routes as auth
    from iotsupport.change_sets import routes as change_sets
    from iotsupport.configs import history_routes
    from iotsupport.configs import routes as configs
    from iotsupport.configs import transfer_routes
    from iotsupport.credentials import routes as credentials
    from iotsupport.device_models import routes as models
    from iotsupport.health import routes as health
    from iotsupport.images import routes as images
    from iotsupport.releases import routes as releases
    from iotsupport.rollouts import routes as rollouts

    app.register_blueprint(auth.bp)
    app.register_blueprint(configs.bp)
    app.register_blueprint(assets.bp)
    app.register_blueprint(history_routes.bp)
    app.register_blueprint(transfer_routes.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(releases.bp)
    app.register_blueprint(rollouts.bp)
    app.register_blueprint(change_sets.bp)
    app.register_blueprint(credentials.bp)
    app.register_blueprint(credentials.device_bp)
    app.register_blueprint(operations.bp)
    app.register_blueprint(docs.bp)
    app.register_blueprint(images.bp)
    app.register_blueprint(ui.bp)
