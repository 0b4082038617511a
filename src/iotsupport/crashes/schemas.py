from __future__ import annotations

import json
import typing as t

from pydantic import BaseModel
from pydantic import Field

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import RequestBody
from iotsupport.configs.schemas import Timestamp
from iotsupport.crashes.tables import CoreDump


class FrameSchema(BaseModel):
    address: int
    function: str | None = None
    file: str | None = None
    line: int | None = None


class CoreDumpCreatedSchema(BaseModel):
    id: int


class CoreDumpSchema(BaseModel):
    id: int
    config_id: int
    sha256: str
    size: int
    verified: bool = Field(
        description="A device credential proved it; unverified ones never count."
    )
    received_at: Timestamp
    state: str = Field(description="pending (not decoded yet), decoded, or unreadable.")
    error: str | None = Field(description="Why an unreadable dump could not be read.")
    chip: str | None
    chip_rev: int | None = None
    app_elf_sha256: str | None = Field(description="As much of it as the dump records (hex).")
    release: str | None = Field(description="The release whose image names that ELF.")
    symbolized: bool = Field(description="Decoded with the release's app ELF.")
    task: str | None = None
    cause: int | None = Field(default=None, description="EXCCAUSE (Xtensa) or mcause (RISC-V).")
    cause_name: str | None = None
    fault_address: int | None = Field(default=None, description="EXCVADDR or mtval.")
    isr_context: bool | None = None
    registers: dict[str, int] = Field(default_factory=dict)
    backtrace: list[FrameSchema] = Field(default_factory=list)
    crash_group: int | None = None


class CoreDumpListSchema(BaseModel):
    coredumps: list[CoreDumpSchema]
    count: int


def coredump_schema(dump: CoreDump, release: str | None) -> CoreDumpSchema:
    decoded: dict[str, t.Any] = json.loads(dump.decoded) if dump.decoded else {}
    return CoreDumpSchema(
        id=dump.id,
        config_id=dump.config_id,
        sha256=dump.sha256,
        size=dump.size,
        verified=dump.verified,
        received_at=dump.received_at,
        state=dump.state,
        error=dump.error,
        chip=dump.chip,
        chip_rev=decoded.get("chip_rev"),
        app_elf_sha256=dump.app_elf_sha256,
        release=release,
        symbolized=dump.symbolized,
        task=decoded.get("task"),
        cause=decoded.get("cause"),
        cause_name=decoded.get("cause_name"),
        fault_address=decoded.get("fault_address"),
        isr_context=decoded.get("isr_context"),
        registers=decoded.get("registers", {}),
        backtrace=[FrameSchema(**frame) for frame in decoded.get("frames", [])],
        crash_group=dump.group_id,
    )


class ReleaseCrashes(BaseModel):
    model: str
    version: str
    occurrences: int
    sample_coredump: int | None = Field(description="A dump of this crash on that release.")


class CrashGroupSchema(BaseModel):
    id: int
    signature: str
    title: str = Field(description="The top frames' functions (or addresses), innermost first.")
    exception: str | None
    frames: list[FrameSchema] = Field(description="The top frames, symbolized when known.")
    status: t.Literal["open", "resolved", "ignored"]
    regression: bool = Field(
        description="Reopened: seen in a newer release than it was resolved in."
    )
    first_seen_at: Timestamp | None
    last_seen_at: Timestamp | None
    occurrences: int
    devices_affected: int
    releases_affected: int = Field(description="Releases it was seen in (known ones).")
    releases: list[ReleaseCrashes] = Field(
        default_factory=list,
        description="Per release: its crashes and a sample dump (on a group's own page).",
    )


class CrashGroupListSchema(BaseModel):
    crashes: list[CrashGroupSchema]
    count: int


class CrashStatusSchema(RequestBody):
    status: t.Literal["open", "resolved", "ignored"]


class CrashQuery(Query):
    model: str | None = None
    release: str | None = None
    status: t.Literal["open", "resolved", "ignored"] | None = None
