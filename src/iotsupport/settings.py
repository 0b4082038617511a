"""Runtime settings, read once from the environment (or a .env file)."""

from __future__ import annotations

import typing as t
from ipaddress import IPv4Network
from ipaddress import IPv6Network
from ipaddress import ip_network
from pathlib import Path

from pydantic import Field
from pydantic import SecretStr
from pydantic import field_validator
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode
from pydantic_settings import SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///iotsupport.db"
# Bind addresses that are no address a client can use.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


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
    # PostgreSQL: where each worker LISTENs for device changes, when DATABASE_URL goes
    # through a pooler in transaction mode (PgBouncer), which cannot carry LISTEN.
    database_listen_url: str | None = None
    # PostgreSQL: how long a commit's MQTT announcements wait at most for every worker
    # to have applied it to its in-memory device documents (README "Scaling").
    device_cache_settle_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    mqtt_url: str | None = None
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_client_id_prefix: str = "iotsupport"
    # How often the outbox is looked at when nothing woke the relay, and how soon
    # another process takes over from a relay that died (README "Change notifications").
    outbox_poll_seconds: float = Field(default=2.0, gt=0, le=60)
    # dynsec: one broker account per device with a credential (Mosquitto's dynamic security).
    mqtt_device_accounts: t.Literal["off", "dynsec"] = "off"
    # What provisioning bundles tell devices (default: MQTT_URL, which may be an internal name).
    device_mqtt_url: str | None = None

    # Device credentials: off (MAC alone, as before), optional (a device that has a
    # credential must use it), required (every device request needs a valid token).
    device_auth: t.Literal["off", "optional", "required"] = "optional"
    device_token_grace_hours: float = Field(default=168.0, ge=0)
    # Failed device authentications per address (per process) before 429.
    device_auth_max_failures: int = Field(default=20, ge=1)
    device_auth_failure_window_seconds: int = Field(default=60, ge=1)

    # Set by `iotsupport serve` so that /metrics adds up every worker process.
    prometheus_multiproc_dir: str | None = None

    # History versions kept per config (the first and the newest are never pruned).
    history_keep_versions: int = Field(default=50, ge=2)
    # Device check-ins are written at most this often per process (coalesced in memory).
    checkin_flush_seconds: float = Field(default=2.0, gt=0, le=60)
    # A device that never said its broker status is offline when its last contact (fetch,
    # health report, log) is older than this (README "Device health").
    offline_after_seconds: float = Field(default=600.0, gt=0)
    # Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For (and
    # X-Forwarded-Host) is believed.
    trusted_proxies: str = ""
    # Host names the server answers to (api/origins.py): names, `.domain`, `ip` (any IP
    # literal), `*`; BASEURL's host is always allowed. Others: 400 before any route.
    allowed_hosts: str = "localhost,ip"

    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    # POST /api/configs/import: the upload, and what its files hold once unzipped; how many
    # files (zip members included). Each file is a config, so at most MAX_REQUEST_BYTES.
    import_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    import_max_files: int = Field(default=10_000, ge=1)
    # The web UI links entity IDs to this Home Assistant (e.g. http://homeassistant.local:8123).
    home_assistant_url: str | None = None
    # One document's JSON Schema validation stops after this long (and is refused).
    schema_validation_timeout_seconds: float = Field(default=1.0, gt=0, le=60)

    image_proxy_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    image_proxy_timeout_seconds: float = Field(default=15.0, gt=0)
    image_proxy_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    # Pixels decoded (a JPEG after its reduced-scale decode); sized for the worker memory goal.
    image_proxy_max_pixels: int = Field(default=8_388_608, ge=1)  # 4096 x 2048: 4K UHD fits
    # Conversions (download to encode) at once per worker; one more: 503 and Retry-After.
    image_proxy_max_conversions: int = Field(default=2, ge=1)
    # Hosts, networks and `public`, each with an optional port (images/destinations.py);
    # empty: public addresses only, on any port.
    image_proxy_allowed_hosts: t.Annotated[list[str], NoDecode] = []
    log_level: str = "INFO"

    # Login (OIDC). Off: every route is open to anyone.
    oidc_enabled: bool = False
    # Where browsers and devices reach us, e.g. https://iot.example.com: every URL the
    # server hands out starts with it (never with a request's Host). Default: HOST:PORT.
    baseurl: str | None = None
    oidc_issuer_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_audience: str | None = None  # default: the client id
    oidc_clock_skew_seconds: int = Field(default=30, ge=0)
    oidc_scopes: str = "openid profile email"
    oidc_role_client: str | None = None  # resource_access.<this>.roles; default: the client id
    # Firmware assets: unset ASSETS_DIR turns the asset endpoints off (503).
    assets_dir: Path | None = None
    signing_key_path: Path | None = None
    timestamp_tolerance_seconds: int = Field(default=300, ge=1)
    asset_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Release files are in the database; each replica keeps copies of those it served
    # here (default: a folder in the system temp dir), up to this many bytes (0: off).
    release_cache_dir: Path | None = None
    release_cache_max_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Also accept the old signature over the timestamp alone (CI scripts not yet updated).
    asset_legacy_signatures: bool = False
    # Rollouts: a device offered a release that reports nothing new for this long after
    # its stage started counts as failed; each worker re-evaluates active rollouts this
    # often (and whenever it has written device reports).
    rollout_device_timeout_seconds: float = Field(default=3600.0, gt=0)
    rollout_tick_seconds: float = Field(default=5.0, gt=0, le=300)

    @field_validator("database_url", "database_listen_url")
    @classmethod
    def _normalise_database_url(cls, url: str | None) -> str | None:
        # Operators often paste the libpq form; SQLAlchemy needs the driver named.
        if url is None:
            return None
        for prefix in ("postgres://", "postgresql://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @field_validator("mqtt_url", "device_mqtt_url")
    @classmethod
    def _check_mqtt_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("mqtt://", "mqtts://")):
            raise ValueError("MQTT_URL must start with mqtt:// or mqtts://")
        return url

    @field_validator("baseurl", "oidc_issuer_url", "home_assistant_url")
    @classmethod
    def _check_http_url(cls, url: str | None) -> str | None:
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        if not self.oidc_enabled:
            return self
        required = ("baseurl", "oidc_issuer_url", "oidc_client_id", "oidc_client_secret")
        missing = [name.upper() for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(f"OIDC_ENABLED=true needs {', '.join(missing)}")
        return self

    @model_validator(mode="after")
    def _check_device_accounts(self) -> Settings:
        if self.mqtt_device_accounts != "dynsec":
            return self
        required = ("mqtt_url", "mqtt_username", "mqtt_password")
        missing = [name.upper() for name in required if not getattr(self, name)]
        if missing:
            raise ValueError(f"MQTT_DEVICE_ACCOUNTS=dynsec needs {', '.join(missing)}")
        return self

    @field_validator("assets_dir", "signing_key_path", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("image_proxy_allowed_hosts", mode="before")
    @classmethod
    def _split_allowed_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        # Imported here: the images package imports this module.
        from iotsupport.images.destinations import Entry
        from iotsupport.images.destinations import EntryError

        entries = [str(entry).strip() for entry in value if str(entry).strip()]
        for entry in entries:
            try:
                Entry.parse(entry)
            except EntryError as exc:
                raise ValueError(f"IMAGE_PROXY_ALLOWED_HOSTS: {exc}") from None
        return entries

    @field_validator("allowed_hosts")
    @classmethod
    def _check_allowed_hosts(cls, value: str) -> str:
        # Imported here: the api package imports this module.
        from iotsupport.api.origins import parse_allowed_hosts

        parse_allowed_hosts(value)  # a typo refused at startup
        return value

    @model_validator(mode="after")
    def _check_public_url(self) -> Settings:
        if self.baseurl is None and self.host in WILDCARD_HOSTS:
            raise ValueError(
                f"HOST={self.host or '(empty)'} needs BASEURL, the URL devices and browsers "
                "reach this server by (provisioning bundles and firmware offers carry it)"
            )
        return self

    @property
    def public_url(self) -> str:
        """Where devices and browsers reach us: BASEURL, else http://HOST:PORT."""
        if self.baseurl:
            return self.baseurl
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

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
