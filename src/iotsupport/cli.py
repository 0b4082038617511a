"""`iotsupport` commands. They are registered on app.cli, so tests run them on a test app."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

import click
from flask import Flask
from flask.cli import with_appcontext
from pydantic import ValidationError
from sqlalchemy import inspect

from iotsupport import migrate
from iotsupport.assets.commands import upload_asset
from iotsupport.assets.commands import upload_release
from iotsupport.configs.files import export_configs
from iotsupport.configs.files import import_configs
from iotsupport.configs.service import ConfigService
from iotsupport.db import commit
from iotsupport.errors import AppError
from iotsupport.errors import StartupError
from iotsupport.extensions import state
from iotsupport.simulator.command import simulate

log = logging.getLogger(__name__)
SAMPLE_DIR = Path(__file__).parent / "sample_data"
# Twice the app's own header limit (api/protections.py), so that the app answers first.
SERVER_HEAD_BYTES = 64 * 1024
# Requests in progress per worker (Granian's backpressure): each waiting body costs at
# most 64 KiB of memory (front/body.py), a slow one no thread.
FRONT_MAX_REQUESTS = 4096
CONFIRM = click.option("--yes-i-am-sure", "confirmed", is_flag=True, help="Confirm data loss.")


@click.command("serve")
@with_appcontext
@click.option("--host", help="Address to listen on [env HOST; default 127.0.0.1].")
@click.option("--port", type=int, help="Port [env PORT; default 3201].")
@click.option("--workers", type=click.IntRange(min=1), help="Processes [env WORKERS; default 2].")
@click.option(
    "--threads", type=click.IntRange(min=1), help="Threads per process [env THREADS; default 4]."
)
def serve(host: str | None, port: int | None, workers: int | None, threads: int | None) -> None:
    """Run the production server (Granian, multi-process and multi-threaded)."""
    settings = state().settings
    if not settings.oidc_enabled:
        # Said here, in the parent process, so it appears once per server, not per worker.
        log.warning(
            "OIDC_ENABLED is false: the server runs WITHOUT authentication; "
            "anyone who can reach it may change every config"
        )
    if settings.device_auth == "off":
        log.warning(
            "DEVICE_AUTH is off: devices are served by MAC alone and tokens are not checked"
        )
    # Workers build their own app from the environment; hand the options on.
    threads = threads or settings.threads
    os.environ["THREADS"] = str(threads)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _fresh_metrics_dir(settings.prometheus_multiproc_dir)
    # Few malloc arenas per worker, so that the memory an image conversion frees on one
    # thread goes back to the system (bench/images.py: 133 MB stayed with the default).
    os.environ.setdefault("MALLOC_ARENA_MAX", "2")
    command = [
        sys.executable,
        "-m",
        "granian",
        # Our ASGI front reads each body whole on the event loop, answers device fetches
        # from memory there, and hands the rest to THREADS threads (iotsupport/front).
        "--interface=asgi",
        "--factory",
        f"--host={host or settings.host}",
        f"--port={port or settings.port}",
        f"--workers={workers or settings.workers}",
        # Requests a worker takes at once: slow clients wait on the loop, not on threads.
        f"--backpressure={FRONT_MAX_REQUESTS}",
        "--backlog=2048",
        "--respawn-failed-workers",
        "--no-access-log",  # ours is one line per request, with the request id
        # The request head the server itself accepts; beyond it, it answers 431 with no
        # body (README "Security"). Our own limit, answered in JSON, is lower.
        f"--http1-buffer-size={SERVER_HEAD_BYTES}",
        "iotsupport.wsgi:create_server_front",
    ]
    # The settings were checked by building the app once; now this process becomes
    # Granian's supervisor, which never loads the app: it only starts and watches the
    # workers (about 25 MB instead of the app's 100).
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def _fresh_metrics_dir(configured: str | None) -> str:
    if configured is None:
        return tempfile.mkdtemp(prefix="iotsupport-metrics-")
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # samples of a previous run
        stale.unlink()
    return str(folder)


@click.command("upgrade-db")
@with_appcontext
@click.option("--recreate", is_flag=True, help="Drop every table first (needs --yes-i-am-sure).")
@CONFIRM
def upgrade_db(recreate: bool, confirmed: bool) -> None:
    """Apply pending database migrations."""
    if recreate and not confirmed:
        raise click.UsageError("--recreate deletes every config; add --yes-i-am-sure to go on")
    migrate.upgrade(state().database.engine, recreate=recreate)
    click.echo(f"database at revision {migrate.status(state().database.engine).current}")


@click.command("load-test-data")
@with_appcontext
@CONFIRM
@click.option(
    "--if-empty", is_flag=True, help="Only load when there are no configs (no data loss)."
)
def load_test_data(confirmed: bool, if_empty: bool) -> None:
    """Recreate the database with a few sample devices."""
    engine = state().database.engine
    if if_empty:
        migrate.upgrade(engine)
        with state().database.session() as session:
            if ConfigService(session).count() > 0:
                click.echo("configs exist already; sample devices not loaded")
                return
    elif not confirmed:
        raise click.UsageError("load-test-data deletes every config; add --yes-i-am-sure")
    else:
        migrate.upgrade(engine, recreate=True)
    _import(SAMPLE_DIR, dry_run=False)


@click.command("db-status")
@with_appcontext
def db_status() -> None:
    """Show the current and pending migrations and the number of configs."""
    database = state().database
    status = migrate.status(database.engine)
    click.echo(f"database: {database.engine.url.render_as_string(hide_password=True)}")
    click.echo(f"current revision: {status.current or '(none)'}")
    click.echo(f"head revision: {status.head}")
    click.echo(f"pending: {', '.join(status.pending) if status.pending else 'none'}")
    if inspect(database.engine).has_table("device_configs"):
        with database.session(read_only=True) as session:
            click.echo(f"configs: {ConfigService(session).count()}")


@click.command("import-dir")
@with_appcontext
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
@click.option(
    "--model", "model", metavar="CODE", help="Put the configs in this model (each must meet it)."
)
def import_dir(directory: Path, dry_run: bool, model: str | None) -> None:
    """Create or update configs from DIR/aa-bb-cc-dd-ee-ff.json files."""
    _import(directory, dry_run=dry_run, model=model)


@click.command("export-dir")
@with_appcontext
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_dir(directory: Path) -> None:
    """Write every config to DIR/aa-bb-cc-dd-ee-ff.json."""
    with state().database.session(read_only=True) as session:
        for line in export_configs(ConfigService(session), directory):
            click.echo(line)


def _import(directory: Path, *, dry_run: bool, model: str | None = None) -> None:
    publisher = state().publisher
    settings = state().settings
    publisher.start()  # devices hear of imported changes when MQTT is configured
    try:
        with state().database.session() as session:
            service = ConfigService(
                session,
                keep_versions=settings.history_keep_versions,
                validation_timeout=settings.schema_validation_timeout_seconds,
            )
            if model is not None:
                service.models.get(model)  # an unknown model stops before the first file
            for line in import_configs(service, directory, model):
                click.echo(line)
            if dry_run:
                click.echo("dry run: nothing was changed")
            else:
                commit(session)
                state().outbox.deliver(5.0)  # the announcements, unless a server sends them
    except AppError as exc:
        raise click.ClickException(exc.message) from None
    finally:
        publisher.stop()


COMMANDS = (
    serve,
    upgrade_db,
    load_test_data,
    db_status,
    import_dir,
    export_dir,
    upload_asset,
    upload_release,
    simulate,
)


def register_commands(app: Flask) -> None:
    for command in COMMANDS:
        app.cli.add_command(command)


def _create_cli_app() -> Flask:
    from iotsupport import create_app
    from iotsupport.logs import configure_logging
    from iotsupport.settings import Settings

    try:
        settings = Settings()
    except ValidationError as exc:
        raise click.ClickException(settings_problems(exc)) from None
    app = create_app(settings)
    configure_logging(state(app).settings.log_level)
    return app


def settings_problems(exc: ValidationError) -> str:
    """One line per bad setting, named as in the environment."""
    lines = ["the settings are not valid:"]
    for error in exc.errors(include_url=False, include_input=False):
        name = "_".join(str(part) for part in error["loc"]).upper()
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {name}: {message}" if name else f"  {message}")
    return "\n".join(lines)


@click.group(name="iotsupport")
@click.version_option(package_name="iotsupport")
@click.pass_context
def main(ctx: click.Context) -> None:
    """IoTSupport: configs and firmware for a fleet of ESP32 devices.

    Settings come from the environment (DATABASE_URL, MQTT_URL, ...; see README.md).
    """
    try:
        app = _create_cli_app()
    except StartupError as exc:
        raise click.ClickException(f"cannot start: {exc}") from None
    ctx.with_resource(app.app_context())


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    sys.exit(main())
