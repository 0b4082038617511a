"""Releases of a model: the image checked and stored, listed, found for a download, deleted.

A release is refused with 422 for each way its image can be wrong (esp_image.py), for a
version that cannot name it, and for another chip than the model's (the model's first
release sets the chip when it has none); with 409 when the version exists. The file goes
into the database (storage.py) in the request's transaction, so a refused upload leaves
nothing behind.
"""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Sequence

from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from iotsupport.assets.store import StagedFile
from iotsupport.configs.tables import DeviceCheckin
from iotsupport.configs.tables import DeviceConfig
from iotsupport.db.base import ANONYMOUS_ACTOR
from iotsupport.db.base import utcnow
from iotsupport.device_models.service import ModelService
from iotsupport.device_models.tables import DeviceModel
from iotsupport.errors import Conflict
from iotsupport.errors import InvalidFirmwareImage
from iotsupport.errors import NotFound
from iotsupport.releases.esp_image import EspImage
from iotsupport.releases.esp_image import parse_image
from iotsupport.releases.esp_image import require_chip
from iotsupport.releases.storage import FileInfo
from iotsupport.releases.storage import delete_file
from iotsupport.releases.storage import store_file
from iotsupport.releases.tables import Release
from iotsupport.releases.tables import StoredFile
from iotsupport.rollouts.tables import ACTIVE_STATES
from iotsupport.rollouts.tables import Rollout
from iotsupport.rollouts.targets import release_in_use

log = logging.getLogger(__name__)

# A version names the release in URLs (/releases/{version}): one path segment.
_UNUSABLE_VERSIONS = ("", ".", "..")


class BadVersion(InvalidFirmwareImage):
    code = "release_bad_version"


class ReleaseExists(Conflict):
    code = "release_exists"


class ReleaseInUse(Conflict):
    code = "release_in_use"


def check_version(version: str) -> None:
    """Refuse a version that is empty or cannot be one segment of a URL path."""
    if version.strip() in _UNUSABLE_VERSIONS or "/" in version or "\\" in version:
        reason = "is empty" if not version.strip() else "cannot name it in a URL"
        raise BadVersion(
            f"the image's version {version!r} {reason}: set PROJECT_VER (or version.txt) "
            "when building it",
            {"version": version},
        )


class ReleaseService:
    def __init__(self, session: Session, *, actor: str = ANONYMOUS_ACTOR) -> None:
        self.session = session
        self.actor = actor
        self.models = ModelService(session, actor=actor)

    def list(self, code: str) -> tuple[DeviceModel, Sequence[Release]]:
        model = self.models.get(code)
        releases = self.session.scalars(
            select(Release)
            .where(Release.model_id == model.id)
            .order_by(Release.created_at.desc(), Release.id.desc())
        ).all()
        return model, releases

    def get(self, code: str, version: str) -> tuple[DeviceModel, Release]:
        model = self.models.get(code)
        release = self.find(model.id, version)
        if release is None:
            raise NotFound(
                f"model {code!r} has no release {version[:32]!r}",
                {"model": code, "version": version[:32]},
            )
        return model, release

    def find(self, model_id: int, version: str) -> Release | None:
        query = select(Release).where(Release.model_id == model_id, Release.version == version)
        return self.session.scalars(query).one_or_none()

    def file_of(
        self, code: str, version: str, *, for_config: int | None = None
    ) -> tuple[int, FileInfo]:
        """The release's id and what a download needs, in one statement. `for_config`: a
        device's download, which finds only its own model's releases (another model's
        get the same 404 as one that does not exist: a device learns nothing of them)."""
        query = (
            select(Release.id, StoredFile.sha256, StoredFile.size, StoredFile.chunk_size)
            .add_columns(StoredFile.created_at)
            .join(StoredFile, StoredFile.sha256 == Release.sha256)
            .join(DeviceModel, DeviceModel.id == Release.model_id)
            .where(DeviceModel.code == code, Release.version == version)
        )
        if for_config is not None:
            query = query.join(
                DeviceConfig,
                (DeviceConfig.model_id == Release.model_id) & (DeviceConfig.id == for_config),
            )
        row = self.session.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"model {code[:64]!r} has no release {version[:32]!r}")
        return row[0], FileInfo(*row[1:])

    def running_counts(self, model_id: int) -> dict[str, int]:
        """Reported version -> how many of the model's devices last reported it."""
        query = (
            select(DeviceCheckin.firmware_version, func.count())
            .join(DeviceConfig, DeviceConfig.id == DeviceCheckin.config_id)
            .where(DeviceConfig.model_id == model_id, DeviceCheckin.firmware_version.is_not(None))
            .group_by(DeviceCheckin.firmware_version)
        )
        return {version or "": count for version, count in self.session.execute(query)}

    def create(self, code: str, staged: StagedFile, *, signed: bool) -> tuple[DeviceModel, Release]:
        """Check the image against the model and store it as a new release."""
        model = self.models.get(code)
        image = parse_image(staged.rewound())
        check_version(image.app.version)
        if model.chip is not None:
            require_chip(image, model.chip)
        if self.find(model.id, image.app.version) is not None:
            raise self._exists(code, image.app.version)
        file = store_file(self.session, staged.rewound())
        release = Release(
            model_id=model.id,
            sha256=file.sha256,
            size=file.size,
            signed=signed,
            created_at=utcnow(),
            created_by=self.actor,
            **_image_fields(image),
        )
        self.session.add(release)
        try:
            self.session.flush()  # waits for a concurrent upload of the same version
        except IntegrityError:
            raise self._exists(code, image.app.version) from None
        if model.chip is None:
            self._claim_chip(model, image)
        log.info("release %s %s stored (%s), by %s", code, release.version, file.sha256, self.actor)
        return model, release

    def delete(self, code: str, version: str) -> None:
        """Delete a release no active rollout uses and no device has as its target."""
        model, release = self.get(code, version)
        active = self.session.scalar(
            select(Rollout.id).where(
                Rollout.release_id == release.id, Rollout.state.in_(ACTIVE_STATES)
            )
        )
        if active is not None:
            raise ReleaseInUse(
                f"rollout {active} is rolling {version!r} out; cancel it first",
                {"rollout": active},
            )
        targets = release_in_use(self.session, release.id)
        if targets:
            raise ReleaseInUse(
                f"{targets} device{'s' if targets != 1 else ''} should run {version!r}; "
                "roll another release out to them first",
                {"device_count": targets},
            )
        sha256 = release.sha256
        self.session.delete(release)
        self.session.flush()
        others = select(func.count()).where(Release.sha256 == sha256)
        if self.session.execute(others).scalar_one() == 0:
            delete_file(self.session, sha256)
        log.info("release %s %s deleted by %s", model.code, version, self.actor)

    def _claim_chip(self, model: DeviceModel, image: EspImage) -> None:
        """The model's first release sets its chip; a concurrent first release of another
        chip finds it set once this one commits, and is refused."""
        claimed = self.session.execute(
            update(DeviceModel)
            .where(DeviceModel.id == model.id, DeviceModel.chip.is_(None))
            .values(chip=image.chip)
            .execution_options(synchronize_session=False)
        )
        if not getattr(claimed, "rowcount", 0):
            chip = self.session.scalar(select(DeviceModel.chip).where(DeviceModel.id == model.id))
            if chip is not None:
                require_chip(image, chip)
        self.session.refresh(model)

    @staticmethod
    def _exists(code: str, version: str) -> ReleaseExists:
        return ReleaseExists(
            f"model {code!r} has a release {version!r} already; build the new one with "
            "another version",
            {"model": code, "version": version},
        )


def _image_fields(image: EspImage) -> dict[str, t.Any]:
    app = image.app
    return {
        "version": app.version,
        "chip": image.chip,
        "project_name": app.project_name,
        "idf_version": app.idf_version,
        "build_date": app.date,
        "build_time": app.time,
        "elf_sha256": app.elf_sha256,
        "secure_version": app.secure_version,
        "image_sha256": image.sha256,
        "min_chip_revision": image.min_chip_revision,
        "max_chip_revision": image.max_chip_revision,
        "flash_size": image.flash_size_name,
        "spi_mode": image.spi_mode_name,
        "entry_point": image.entry_point,
        "segment_count": len(image.segments),
    }
