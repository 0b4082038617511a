from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import Field
from pydantic import field_validator

from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import Timestamp
from iotsupport.rollouts.stages import MAX_STAGES
from iotsupport.rollouts.stages import StageSpec
from iotsupport.rollouts.stages import check_stages
from iotsupport.rollouts.stages import check_threshold
from iotsupport.rollouts.tables import DeviceState
from iotsupport.rollouts.tables import RolloutState

SHARE_PATTERN = r"^\d{1,3}(\.\d{1,2})?%$"


class RolloutCreateSchema(RequestBody):
    version: str = Field(
        min_length=1, max_length=32, description="The release to roll out (its version)."
    )
    stages: list[int | t.Annotated[str, Field(pattern=SHARE_PATTERN)]] = Field(
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
    unverified_reports: bool = Field(
        default=False,
        description="Also judge devices by reports that no device credential proved "
        "(fetches without a token, DEVICE_AUTH optional or off). Anyone who can reach the "
        "server can send those for a device without a credential: off, they move nothing.",
    )

    health_window: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="Seconds after updating during which a crash on the release (an "
        "unexpected reset: PANIC, INT_WDT, TASK_WDT, WDT, BROWNOUT) makes the device "
        "`crashed`, which counts toward error_threshold.",
    )
    max_crash_rate: str | None = Field(
        default=None,
        pattern=SHARE_PATTERN,
        description='Pause when this share of a stage\'s devices crashed, e.g. "10%".',
    )
    compare_to_previous: bool = Field(
        default=False,
        description="Pause when the devices of a stage are less crash-free on the release "
        "than the model's devices on the release before it, by more than crash_free_margin.",
    )
    crash_free_margin: float = Field(
        default=5.0, ge=0, le=100, description="Percentage points (compare_to_previous)."
    )

    @field_validator("stages")
    @classmethod
    def _check_stages(cls, stages: list[StageSpec]) -> list[StageSpec]:
        return check_stages(stages)

    @field_validator("error_threshold", "max_crash_rate")
    @classmethod
    def _check_threshold(cls, threshold: str | None) -> str | None:
        return check_threshold(threshold)


class CountsSchema(BaseModel):
    pending: int
    downloading: int
    updated: int
    failed: int
    crashed: int = Field(description="Updated, then crashed on the release (health_window).")
    total: int


class DeviceProgressSchema(BaseModel):
    config_id: int
    mac_address: str
    state: DeviceState
    reason: str | None = Field(
        description="Why it failed: old_version (reported another version after downloading), "
        "sha256_mismatch (the version with another SHA-256), timeout; why it crashed: the "
        "reset reason (PANIC, ...)."
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
    paused_reason: (
        t.Literal["manual", "error_threshold", "crash_rate", "worse_than_previous"] | None
    )
    paused_detail: str | None = Field(
        description="Why it paused itself, for a person (counts, reset reasons, rates)."
    )
    health_window: int = Field(description="Seconds (see the create body).")
    max_crash_rate: str | None
    compare_to_previous: bool
    crash_free_margin: float
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
