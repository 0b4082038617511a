"""Runtime settings, read once from the environment (or a .env file)."""

from __future__ import annotations

import ipaddress
import re
import typing as t

from pydantic import Field
from pydantic import field_validator
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode
from pydantic_settings import SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///iotsupport.db"
_HOST_NAME = re.compile(r"[^\s/:@?#\[\]]+")


class Settings(BaseSettings):
    """Every knob of the server; see README.md for the table."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=3201, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    threads: int = Field(default=4, ge=1)

    database_url: str = DEFAULT_DATABASE_URL
    db_pool_size: int | None = Field(default=None, ge=1)  # default: THREADS
    db_connect_timeout_seconds: float = Field(default=2.0, gt=0)

    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id_prefix: str = "iotsupport"

    # Set by `iotsupport serve` so that /metrics adds up every worker process.
    prometheus_multiproc_dir: str | None = None

    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)

    image_proxy_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    image_proxy_timeout_seconds: float = Field(default=15.0, gt=0)
    image_proxy_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    image_proxy_max_pixels: int = Field(default=89_478_485, ge=1)  # Pillow's own default
    # Comma-separated host names and CIDRs; empty: any http(s) URL may be fetched.
    image_proxy_allowed_hosts: t.Annotated[list[str], NoDecode] = []
    log_level: str = "INFO"

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, url: str) -> str:
        # Operators often paste the libpq form; SQLAlchemy needs the driver named.
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @field_validator("mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("mqtt://", "mqtts://")):
            raise ValueError("MQTT_URL must start with mqtt:// or mqtts://")
        return url

    @field_validator("image_proxy_allowed_hosts", mode="before")
    @classmethod
    def _split_allowed_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        entries = [str(entry).strip() for entry in value if str(entry).strip()]
        for entry in entries:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                if not _HOST_NAME.fullmatch(entry):
                    raise ValueError(
                        f"IMAGE_PROXY_ALLOWED_HOSTS: {entry!r} is neither a host name nor a CIDR"
                    ) from None
        return entries

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
