"""Device configs: create, read, replace, delete, roll back, restore, and the device's fetch."""

from __future__ import annotations

import functools
import typing as t

from sqlalchemy import ColumnElement
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.configs.content import content_etag
from iotsupport.configs.content import derive_fields
from iotsupport.configs.content import normalize_mac
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.history import HistoryService
from iotsupport.configs.tables import DeviceConfig
from iotsupport.configs.tables import HistoryEvent
from iotsupport.credentials.accounts import NO_BROKER_ACCOUNTS
from iotsupport.credentials.accounts import BrokerAccounts
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import LISTED_CONFIGS
from iotsupport.device_models.service import ModelService
from iotsupport.device_models.service import schema_of
from iotsupport.device_models.service import violation
from iotsupport.device_models.tables import DeviceModel
from iotsupport.device_models.validation import MAX_ERRORS
from iotsupport.device_models.validation import Budget
from iotsupport.errors import Conflict
from iotsupport.errors import InvalidInput
from iotsupport.errors import NotFound
from iotsupport.errors import PreconditionFailed
from iotsupport.errors import SchemaViolation
from iotsupport.outbox import announce_config
from iotsupport.outbox import announce_desired

ImportOutcome = t.Literal["created", "updated", "unchanged"]


class Unset:
    """The body did not mention the field (unlike an explicit null)."""


UNSET = Unset()
# A config's model, as a request gives it: a code, None (no model), or UNSET (keep it).
ModelChoice = str | None | Unset


class ConfigService:
    def __init__(
        self,
        session: Session,
        *,
        actor: str = ANONYMOUS_ACTOR,
        keep_versions: int = 50,
        validation_timeout: float = 1.0,
        accounts: BrokerAccounts = NO_BROKER_ACCOUNTS,
    ) -> None:
        """`actor` is who makes the changes, recorded as `updated_by` and in the history.

        `accounts`: the devices' broker accounts (MQTT_DEVICE_ACCOUNTS), told of deletes.
        """
        self.session = session
        self.actor = actor
        self.keep_versions = keep_versions
        self.validation_timeout = validation_timeout
        self.accounts = accounts

    @functools.cached_property
    def models(self) -> ModelService:
        return ModelService(
            self.session, actor=self.actor, validation_timeout=self.validation_timeout
        )

    @functools.cached_property
    def history(self) -> HistoryService:
        # Built on first use: the device endpoint never needs it.
        return HistoryService(self.session, keep_versions=self.keep_versions)

    def all_configs(self) -> t.Sequence[DeviceConfig]:
        return self.session.scalars(select(DeviceConfig).order_by(DeviceConfig.mac_address)).all()

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(DeviceConfig)) or 0

    def get(self, config_id: int) -> DeviceConfig:
        config = self.session.get(DeviceConfig, config_id)
        if config is None:
            raise NotFound(f"config {config_id} does not exist")
        return config

    def find_by_mac(self, mac_address: str) -> DeviceConfig | None:
        query = select(DeviceConfig).where(DeviceConfig.mac_address == normalize_mac(mac_address))
        return self.session.scalars(query).one_or_none()

    def create(self, mac_address: str, content: str, model: str | None = None) -> DeviceConfig:
        mac = normalize_mac(mac_address)
        config = DeviceConfig(mac_address=mac, updated_by=self.actor)
        model_row = self.models.get(model) if model is not None else None
        # A 400 comes before a 409.
        self._set_content(config, content, version=1, model=self._locked_model(model_row))
        self._refuse_taken_mac(mac)
        config.created_at = config.updated_at = utcnow()
        self._insert(config)
        self.history.record(config, "created")
        self._announce(config)
        return config

    def update(
        self,
        config_id: int,
        content: str,
        *,
        expected_etags: t.Container[str] | None = None,
        mac_address: str | None = None,
        model: ModelChoice = UNSET,
    ) -> DeviceConfig:
        """Replace the content (and the model, unless UNSET); `expected_etags` (If-Match)
        refuses to overwrite a newer save. The same bytes in the same model save nothing:
        no version, no history, no message (the config is returned as it is)."""
        # An unknown model is a 404 before any lock is taken.
        target = self.models.get(model) if isinstance(model, str) else model
        config = self._get_for_update(config_id)
        if mac_address is not None and normalize_mac(mac_address) != config.mac_address:
            raise InvalidInput("the MAC address of a config cannot change; create a new one")
        if expected_etags is not None and config.etag not in expected_etags:
            raise PreconditionFailed(
                "the config changed since you read it; fetch it again",
                {"current_etag": config.etag, "version": config.version},
            )
        same_model = isinstance(target, Unset) or target is config.device_model
        if content == config.content and same_model:
            return config
        return self._save(config, content, "updated", model=target)

    def rollback(self, config_id: int, version: int) -> DeviceConfig:
        """A new version with the content that `version` had."""
        config = self._get_for_update(config_id)
        old = self.history.version(config_id, version)
        return self._save(config, old.content, "rolled_back", source_version=version)

    def delete(self, config_id: int) -> None:
        config = self._get_for_update(config_id)
        self.history.record_deletion(config, utcnow(), self.actor)
        self.session.delete(config)
        self.session.flush()
        if config.credential is not None:  # kept for a restore; the broker account goes
            self.accounts.forget(self.session, config_id, config.mac_address)
        announce_desired(self.session, [config.mac_address])  # clears its retained state

    def restore(self, mac_address: str) -> DeviceConfig:
        """Bring the MAC's last deleted config back: same id, its history, a new version."""
        mac = normalize_mac(mac_address)
        deletion = self.history.latest_deletion(mac)
        newest = self.history.newest(deletion.config_id) if deletion else None
        if deletion is None or newest is None:
            raise NotFound(f"no deleted config for {mac}", {"mac_address": mac})
        self._refuse_taken_mac(mac, "has been created again; delete it first to restore")
        config = DeviceConfig(id=deletion.config_id, mac_address=mac, updated_by=self.actor)
        # Back in its model, if the model still exists.
        model = self.session.get(DeviceModel, newest.model_id) if newest.model_id else None
        self._set_content(
            config, newest.content, version=newest.version + 1, model=self._locked_model(model)
        )
        config.created_at = deletion.config_created_at
        config.updated_at = utcnow()
        self._insert(config)
        self.history.record(config, "restored", source_version=newest.version)
        self._announce(config)
        return config

    def import_document(
        self, mac_address: str, content: str, model: str | None = None
    ) -> ImportOutcome:
        """Create or update from the old file layout; identical content is left alone.
        With `model`, the config is put in that model (and must meet its schema)."""
        existing = self.find_by_mac(mac_address)
        if existing is None:
            self.create(mac_address, content, model)
            return "created"
        if existing.content == content and (model is None or existing.model == model):
            return "unchanged"
        self.update(existing.id, content, model=UNSET if model is None else model)
        return "updated"

    def many(
        self,
        *,
        ids: t.Collection[int] = (),
        model: str | None = None,
        where: ColumnElement[bool] | None = None,
        lock: bool = False,
    ) -> list[DeviceConfig]:
        """The configs with these ids (or of this model, or those `where` holds for), by
        id; `lock`: row locks, taken in id order (the order every writer takes them in)."""
        query = select(DeviceConfig).order_by(DeviceConfig.id)
        if lock:
            query = query.with_for_update(of=DeviceConfig.__table__)
        if where is not None:
            query = query.where(where)
        elif model is not None:
            query = query.where(DeviceConfig.model_id == self.models.get(model).id)
        else:
            query = query.where(DeviceConfig.id.in_(list(ids)))
        return list(self.session.scalars(query).unique())

    def save_many(
        self,
        changes: t.Sequence[tuple[DeviceConfig, str]],
        event: HistoryEvent,
        *,
        change_set_id: int,
        skip_invalid: bool = False,
        models: t.Mapping[int, int | None] | None = None,
    ) -> list[dict[str, t.Any]]:
        """New versions of many locked configs in this transaction: each is checked against
        its model's schema first, and one violation refuses them all (naming each), or with
        `skip_invalid` leaves the failing ones as they are. Returns those left out.
        `models`: config id -> the model id it moves to (None: no model); else its own."""
        moves = models or {}

        def target_id(config: DeviceConfig) -> int | None:
            return moves[config.id] if config.id in moves else config.model_id

        wanted = {target_id(config) for config, _ in changes}
        locked = {
            model_id: self.models.lock(model_id, share=True)
            for model_id in sorted(model_id for model_id in wanted if model_id is not None)
        }
        failing: list[dict[str, t.Any]] = []
        budget = Budget(self.validation_timeout)  # one deadline for them all
        for config, content in changes:
            value = parse_json_object(content)
            model = locked.get(target_id(config) or 0)
            errors = (
                schema_of(model).errors(value, self.validation_timeout, budget) if model else []
            )
            if errors:
                failing.append(
                    {"id": config.id, "mac_address": config.mac_address, "errors": errors}
                )
        if failing and skip_invalid:
            left_out = {entry["id"] for entry in failing}
            changes = [
                (config, content) for config, content in changes if config.id not in left_out
            ]
        elif failing:
            flat = [
                {"config_id": entry["id"], **error}
                for entry in failing
                for error in entry["errors"]
            ]
            count = len(failing)
            raise SchemaViolation(
                f"{count} config{'s' if count != 1 else ''} would not meet their model's "
                "schema; nothing was changed",
                {"errors": flat[:MAX_ERRORS], "configs": failing[:LISTED_CONFIGS], "count": count},
            )
        for config, content in changes:
            model = locked.get(target_id(config) or 0)
            self._save(
                config, content, event, model=model, change_set_id=change_set_id, checked=True
            )
        return failing

    def _save(
        self,
        config: DeviceConfig,
        content: str,
        event: HistoryEvent,
        *,
        model: DeviceModel | None | Unset = UNSET,
        source_version: int | None = None,
        change_set_id: int | None = None,
        checked: bool = False,
    ) -> DeviceConfig:
        """A new version, in `model` (UNSET: the config's own). `checked`: the caller has
        validated the content already, with the model locked."""
        target = config.device_model if isinstance(model, Unset) else model
        if not checked:
            target = self._locked_model(target)
        self._set_content(
            config, content, version=config.version + 1, model=target, validate=not checked
        )
        config.updated_at = utcnow()
        config.updated_by = self.actor
        self.session.flush()
        self.history.record(
            config, event, source_version=source_version, change_set_id=change_set_id
        )
        self._announce(config)
        return config

    def _refuse_taken_mac(self, mac: str, why: str = "already exists") -> None:
        taken = self.session.scalar(select(DeviceConfig.id).where(DeviceConfig.mac_address == mac))
        if taken:
            raise Conflict(f"a config for {mac} {why}", {"mac_address": mac, "config_id": taken})

    def _insert(self, config: DeviceConfig) -> None:
        self.session.add(config)
        try:
            self.session.flush()
        except IntegrityError:  # another request created (or restored) the same MAC just now
            mac = config.mac_address
            raise Conflict(f"a config for {mac} already exists", {"mac_address": mac}) from None

    def _get_for_update(self, config_id: int) -> DeviceConfig:
        return config_for_update(self.session, config_id)

    def _locked_model(self, model: DeviceModel | None) -> DeviceModel | None:
        # Shared lock: a schema change of the model waits until this save has committed.
        return self.models.lock(model.id, share=True) if model is not None else None

    def _set_content(
        self,
        config: DeviceConfig,
        content: str,
        *,
        version: int,
        model: DeviceModel | None,
        validate: bool = True,
    ) -> None:
        """Put the content (and what follows from it) and the model on the config; refused
        unless the content meets the model's schema."""
        value = parse_json_object(content)
        if model is not None and validate:
            errors = schema_of(model).errors(value, self.validation_timeout)
            if errors:
                raise violation(f"the content does not meet the schema of {model.code!r}", errors)
        config.device_model = model
        config.model_id = model.id if model is not None else None
        config.schema_valid = True if model is not None else None
        derived = derive_fields(value)
        config.version = version
        config.etag = content_etag(version, content)
        config.content = content
        config.device_name = derived.device_name
        config.device_entity_id = derived.device_entity_id
        config.enable_ota = derived.enable_ota

    def _announce(self, config: DeviceConfig) -> None:
        announce_config(self.session, config.mac_address)


def config_for_update(session: Session, config_id: int) -> DeviceConfig:
    """The config, row-locked on PostgreSQL (so concurrent changes are serialized); 404."""
    # Only the config's row: its check-in and credential are outer-joined, and are
    # the devices' to write.
    query = (
        select(DeviceConfig)
        .where(DeviceConfig.id == config_id)
        .with_for_update(of=DeviceConfig.__table__)
    )
    config = session.scalars(query).one_or_none()
    if config is None:
        raise NotFound(f"config {config_id} does not exist")
    return config
