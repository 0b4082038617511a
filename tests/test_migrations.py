"""The migrations are the schema: they must agree with the models, on both backends."""

from __future__ import annotations

import shutil
import typing as t
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy import create_engine
from sqlalchemy import inspect
from sqlalchemy import text

from iotsupport import migrate
from iotsupport.db.tables import Base
from iotsupport.db.tables import outside_models


def schema_differences(engine: Engine, metadata: sa.MetaData = Base.metadata) -> list[t.Any]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection,
            opts={
                "compare_type": True,
                "target_metadata": metadata,
                "include_name": outside_models,
            },
        )
        differences: list[t.Any] = compare_metadata(context, metadata)
    return differences


def alembic_config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", "iotsupport:migrations")
    config.attributes["connection"] = connection
    return config


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> t.Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    yield engine
    engine.dispose()


def test_migrated_sqlite_matches_the_models(sqlite_template: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    shutil.copyfile(sqlite_template, copy)
    engine = create_engine(f"sqlite:///{copy}")
    assert schema_differences(engine) == []
    engine.dispose()


@pytest.mark.postgres
def test_migrated_postgresql_matches_the_models(pg_database_url: str) -> None:
    engine = create_engine(pg_database_url)
    assert schema_differences(engine) == []
    engine.dispose()


def test_the_comparison_notices_drift(fresh_sqlite: Engine) -> None:
    migrate.upgrade(fresh_sqlite)
    drifted = sa.MetaData()
    for table in Base.metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["device_configs"].append_column(sa.Column("firmware", sa.Text()))
    differences = schema_differences(fresh_sqlite, drifted)
    assert differences
    assert any(diff[0] == "add_column" and diff[3].name == "firmware" for diff in differences)


def test_a_fresh_database_has_one_pending_migration(fresh_sqlite: Engine) -> None:
    status = migrate.status(fresh_sqlite)
    assert status.current is None
    assert status.head is not None
    assert len(status.pending) >= 1
    assert status.pending[-1].startswith(status.head)


def test_upgrade_reaches_head_and_is_idempotent(fresh_sqlite: Engine) -> None:
    migrate.upgrade(fresh_sqlite)
    first = migrate.status(fresh_sqlite)
    assert first.current == first.head
    assert first.pending == []
    with fresh_sqlite.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO device_configs (mac_address, content, version, etag, created_at, "
                "updated_at) VALUES ('aa:bb:cc:dd:ee:ff', '{}', 1, 'e', '2026-01-01', '2026-01-01')"
            )
        )
    migrate.upgrade(fresh_sqlite)
    migrate.upgrade(fresh_sqlite)
    again = migrate.status(fresh_sqlite)
    assert again == first
    with fresh_sqlite.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM device_configs")).scalar_one() == 1
    assert schema_differences(fresh_sqlite) == []


def test_recreate_empties_the_database(fresh_sqlite: Engine) -> None:
    migrate.upgrade(fresh_sqlite)
    with fresh_sqlite.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO device_configs (mac_address, content, version, etag, created_at, "
                "updated_at) VALUES ('aa:bb:cc:dd:ee:ff', '{}', 1, 'e', '2026-01-01', '2026-01-01')"
            )
        )
    migrate.upgrade(fresh_sqlite, recreate=True)
    with fresh_sqlite.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM device_configs")).scalar_one() == 0
    assert migrate.status(fresh_sqlite).pending == []
    assert schema_differences(fresh_sqlite) == []


def test_downgrade_to_base_and_up_again(fresh_sqlite: Engine) -> None:
    migrate.upgrade(fresh_sqlite)
    with fresh_sqlite.begin() as connection:
        command.downgrade(alembic_config(connection), "base")
    assert not inspect(fresh_sqlite).has_table("device_configs")
    assert migrate.status(fresh_sqlite).current is None
    migrate.upgrade(fresh_sqlite)
    assert schema_differences(fresh_sqlite) == []


def test_mac_address_is_unique_in_the_schema(fresh_sqlite: Engine) -> None:
    migrate.upgrade(fresh_sqlite)
    insert = text(
        "INSERT INTO device_configs (mac_address, content, version, etag, created_at, updated_at) "
        "VALUES ('aa:bb:cc:dd:ee:ff', '{}', 1, 'e', '2026-01-01', '2026-01-01')"
    )
    with fresh_sqlite.begin() as connection:
        connection.execute(insert)
    with pytest.raises(sa.exc.IntegrityError), fresh_sqlite.begin() as connection:
        connection.execute(insert)


def test_existing_configs_start_their_history_at_their_current_version(
    fresh_sqlite: Engine,
) -> None:
    with fresh_sqlite.begin() as connection:
        command.upgrade(alembic_config(connection), "0001")
        connection.execute(
            text(
                "INSERT INTO device_configs (mac_address, content, device_name, version, etag, "
                "created_at, updated_at) VALUES ('aa:bb:cc:dd:ee:ff', '{\"deviceName\": \"x\"}', "
                "'x', 4, 'e', '2026-01-01', '2026-01-02')"
            )
        )
    migrate.upgrade(fresh_sqlite)
    with fresh_sqlite.connect() as connection:
        assert connection.execute(text("SELECT updated_by FROM device_configs")).scalar_one() == (
            "anonymous"
        )
        rows = connection.execute(
            text(
                "SELECT config_id, version, event, content, device_name, saved_by "
                "FROM config_history"
            )
        ).all()
    assert [tuple(row) for row in rows] == [
        (1, 4, "updated", '{"deviceName": "x"}', "x", "anonymous")
    ]
