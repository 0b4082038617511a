"""Stages of a rollout: the admin's list, which devices each stage gets, and thresholds.

A stage is written as a number of devices (`1`) or a share of the model's devices
(`"10%"`), counted from the start: `[1, "10%", "100%"]` is one device, then up to a
tenth of them, then all. The last stage is always `"100%"`, so that every device of
the model, also one added while the rollout runs, has a stage.

Which devices: ordered by the SHA-256 of the rollout's id and the MAC, so the same
rollout always picks the same devices, a new rollout picks others, and the order says
nothing about when a device was added.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence

StageSpec = int | str
MAX_STAGES = 20
PERCENT = re.compile(r"(\d{1,3}(?:\.\d{1,2})?)%")


def percent(text: str) -> float | None:
    """The number in "12.5%", or None when it is not a percentage from 0 to 100."""
    match = PERCENT.fullmatch(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if value <= 100 else None


def check_stages(stages: Sequence[StageSpec]) -> list[StageSpec]:
    """The stages as given, or ValueError saying what is wrong with them."""
    if not 1 <= len(stages) <= MAX_STAGES:
        raise ValueError(f"give 1 to {MAX_STAGES} stages")
    counts: list[int] = []
    shares: list[float] = []
    for stage in stages:
        if isinstance(stage, int):
            if stage < 1:
                raise ValueError("a stage of devices counts at least 1")
            counts.append(stage)
            continue
        share = percent(stage)
        if share is None or share <= 0:
            raise ValueError(f'{stage!r} is not a share such as "10%" (above 0, at most 100)')
        shares.append(share)
    for kind, values in (("counts", counts), ("percentages", shares)):
        if any(later <= earlier for earlier, later in zip(values, values[1:], strict=False)):
            raise ValueError(f"stage {kind} must grow from stage to stage (they count from 0)")
    if stages[-1] != "100%" and percent(str(stages[-1])) != 100:
        raise ValueError('the last stage must be "100%", so that every device gets the release')
    return list(stages)


def check_threshold(threshold: str | None) -> str | None:
    if threshold is not None and percent(threshold) is None:
        raise ValueError('error_threshold is a share such as "20%" (0 to 100)')
    return threshold


def cumulative_sizes(stages: Sequence[StageSpec], total: int) -> list[int]:
    """How many devices have been reached once each stage has started."""
    sizes = []
    reached = 0
    for stage in stages:
        if isinstance(stage, int):
            wanted = stage
        else:
            share = percent(stage) or 0.0
            wanted = math.ceil(round(share * total, 6) / 100)
        reached = max(reached, min(total, wanted))
        sizes.append(reached)
    if sizes:
        sizes[-1] = total
    return sizes


def stage_order(rollout_id: int, mac_address: str) -> bytes:
    return hashlib.sha256(f"{rollout_id}:{mac_address}".encode()).digest()


def assign(rollout_id: int, stages: Sequence[StageSpec], macs: Sequence[str]) -> dict[str, int]:
    """MAC -> stage index (0-based) for the devices of a new rollout."""
    ordered = sorted(macs, key=lambda mac: stage_order(rollout_id, mac))
    sizes = cumulative_sizes(stages, len(ordered))
    assigned: dict[str, int] = {}
    start = 0
    for index, end in enumerate(sizes):
        for mac in ordered[start:end]:
            assigned[mac] = index
        start = max(start, end)
    return assigned


def threshold_reached(threshold: str | None, failed: int, size: int) -> bool:
    """At least one failure, and failures at or above the threshold's share of the stage."""
    share = percent(threshold) if threshold is not None else None
    if share is None or failed == 0 or size == 0:
        return False
    return failed * 100 >= share * size


def describe(stage: StageSpec) -> str:
    return f"{stage} device{'s' if stage != 1 else ''}" if isinstance(stage, int) else stage
