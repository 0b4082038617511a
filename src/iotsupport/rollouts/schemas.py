from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import Field
from pydantic import WithJsonSchema
from pydantic import field_validator

from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import Timestamp
from iotsupport.db.base import MAX_INT
from iotsupport.rollouts.stages import MAX_STAGES
from iotsupport.rollouts.stages import StageSpec
from iotsupport.rollouts.stages import check_stages
from iotsupport.rollouts.stages import check_threshold
from iotsupport.rollouts.tables import DeviceState
from iotsupport.rollouts.tables import RolloutState

SHARE_PATTERN = r"^\d{1,3}(\.\d{1,2})?%$"


# A stage's share: above 0, at most 100 (check_stages says so; the pattern, for the document).
STAGE_SHARE_PATTERN = r"^(100(\.0{1,2})?|[1-9]\d?(\.\d{1,2})?|0\.(0[1-9]|[1-9]\d?))%$"
StageCount = t.Annotated[int, WithJsonSchema({"type": "integer", "minimum": 1})]
StageShare = t.Annotated[
    str,
    Field(pattern=SHARE_PATTERN),
    WithJsonSchema({"type": "string", "pattern": STAGE_SHARE_PATTERN}),
]


class RolloutCreateSchema(RequestBody):
    version: str = Field(
        min_length=1, max_length=32, description="The release to roll out (its version)."
    )
    stages: list[StageCount | StageShare] = Field(
        min_length=1,
        max_length=MAX_STAGES,
        description="Counted from the start: a number of devices (1) or a share of the "
        'model\'s devices ("10%"); each larger than the one before; the last is "100%". '
        'E.g. [1, "10%", "100%"].',
    )
    error_threshold: str | None = Field(
        default=None,
        pattern=SHARE_PATTERN,
        description="Pause when this share of the current stage's devices failed (at least "
        'one), e.g. "20%"; null: never pause by itself.',
    )
    approve_each_stage: bool = Field(
        default=False,
        description="Wait for POST /api/rollouts/{id}/approve before each stage after the first.",
    )
    where: str | None = Field(
        default=None,
        description='Only the model\'s devices this query selects (README "Device queries"), '
        "e.g. `name == lab-*`; the stages are counted over them. null: all of its devices.",
    )
    unverified_reports: bool = Field(
        default=False,
        description="Also judge devices by reports that no device credential proved "
        "(fetches without a token, DEVICE_AUTH optional or off). Anyone who can reach the "
        "server can send those for a device without a credential: off, they move nothing.",
    )

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, stages: list[StageSpec]) -> list[StageSpec]:
        return check_stages(stages)

    @field_validator("error_threshold")
    @classmethod
    def _check_threshold(cls, threshold: str | None) -> str | None:
        return check_threshold(threshold)


class CountsSchema(BaseModel):
    pending: int
    downloading: int
    updated: int
    failed: int
    total: int
    skipped: int = Field(default=0, description="Of the failed: skipped by an admin.")


class DeviceProgressSchema(BaseModel):
    config_id: int
    mac_address: str
    state: DeviceState
    reason: str | None = Field(
        description="Why it failed: old_version (reported another version after downloading), "
        "sha256_mismatch (the version with another SHA-256), timeout, skipped (an admin "
        "stopped waiting for it)."
    )
    from_version: str | None = Field(description="What it reported when the rollout began.")
    reported_version: str | None = Field(
        description="What its last report that this rollout takes said: proved by the "
        "device's credential, or any report with unverified_reports."
    )
    reported_sha256: str | None
    reported_at: Timestamp | None
    unknown_firmware: bool = Field(
        description="It reports a version that no release of the model has (not an error)."
    )
    download_started_at: Timestamp | None
    last_contact_at: Timestamp | None = Field(
        default=None, description="Its last fetch of any kind (None: never)."
    )
    times_out_at: Timestamp | None = Field(
        default=None,
        description="Pending or downloading in a started stage: when it counts as failed.",
    )


class StageSchema(BaseModel):
    number: int = Field(description="1 for the first stage.")
    target: int | str = Field(description="The stage as given: devices, or a share.")
    state: t.Literal["waiting", "running", "done"]
    released_at: Timestamp | None = Field(description="When the stage started.")
    counts: CountsSchema
    devices: list[DeviceProgressSchema]


class RolloutSummarySchema(BaseModel):
    id: int
    model: str
    version: str
    sha256: str
    state: RolloutState
    paused_reason: t.Literal["manual", "error_threshold"] | None
    current_stage: int = Field(description="The stage reached, from 1.")
    stage_count: int
    error_threshold: str | None
    approve_each_stage: bool
    unverified_reports: bool = Field(
        description="Devices are judged also by reports no credential proved."
    )
    counts: CountsSchema
    created_at: Timestamp
    created_by: str
    updated_at: Timestamp
    finished_at: Timestamp | None


class RolloutSchema(RolloutSummarySchema):
    """A rollout with its stages and their devices."""

    device_timeout_seconds: int = Field(
        default=0,
        description="ROLLOUT_DEVICE_TIMEOUT_SECONDS: a device not updated this long after its "
        "stage started (or its download began) counts as failed.",
    )

    stages: list[StageSchema]


class RolloutListSchema(BaseModel):
    """A model's rollouts, newest first."""

    model: str
    rollouts: list[RolloutSummarySchema]
    count: int


class FirmwareTargetSchema(BaseModel):
    """The release this device should run."""

    version: str
    size: int = Field(description="Bytes to download.")
    sha256: str = Field(description="SHA-256 of the file, hex: check the download against it.")
    url: str = Field(description="Where to download it (with this device's token).")
    signed_url: str = Field(
        description="The same file for this device alone, without a token (an OTA client "
        "that cannot send one; HTTP caches), until signed_url_expires_at."
    )
    signed_url_expires_at: Timestamp


class SkipSchema(RequestBody):
    config_ids: list[t.Annotated[int, Field(ge=1, le=MAX_INT)]] = Field(
        min_length=1,
        max_length=20_000,
        description="Devices to stop waiting for: pending or downloading, in a started stage.",
    )
