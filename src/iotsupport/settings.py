"""Runtime settings, read once from the environment (or a .env file)."""

from __future__ import annotations

from ipaddress import IPv4Network
from ipaddress import IPv6Network
from ipaddress import ip_network

from pydantic import Field
from pydantic import field_validator
from pydantic_settings import BaseSettings
from pydantic_settings import SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///iotsupport.db"


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

    # History versions kept per config (the first and the newest are never pruned).
    history_keep_versions: int = Field(default=50, ge=2)
    # Device check-ins are written at most this often per process (coalesced in memory).
    checkin_flush_seconds: float = Field(default=2.0, gt=0, le=60)
    # Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: str = ""

    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
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

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        _parse_networks(value)  # refuse a typo at startup, not on the first request
        return value

    @property
    def trusted_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return _parse_networks(self.trusted_proxies)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _parse_networks(value: str) -> tuple[IPv4Network | IPv6Network, ...]:
    try:
        return tuple(
            ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip()
        )
    except ValueError as exc:
        raise ValueError(f"TRUSTED_PROXIES: {exc}") from None
