"""The bounds of a bulk change: how much it may hold, and what it refuses."""

from __future__ import annotations

import typing as t

from iotsupport.change_sets import merge_patch
from iotsupport.configs.tables import DeviceConfig
from iotsupport.errors import InvalidInput
from iotsupport.errors import PayloadTooLarge
from iotsupport.json_text import MAX_DEPTH

# The patch's size times the configs it covers: each config's new text holds the patch,
# and a preview and an apply hold them all at once. 64 MiB: a 1 MiB patch over 64
# configs, or a 1 KiB patch over 65,536.
MAX_PATCH_VOLUME = 64 * 1024 * 1024
# The diffs of one preview, together (characters): beyond, a row says its diff is left out.
PREVIEW_DIFF_CHARS = 2 * 1024 * 1024


class BulkTooLarge(PayloadTooLarge):
    code = "bulk_too_large"


class NothingSelected(InvalidInput):
    code = "nothing_selected"


def patched(config: DeviceConfig, patch: dict[str, t.Any]) -> str:
    try:
        return merge_patch.apply(config.content, patch)
    except RecursionError:  # only a config saved before MAX_DEPTH was enforced
        raise InvalidInput(
            f"config {config.id} ({config.mac_address}) is nested too deeply to patch "
            f"(more than {MAX_DEPTH} levels); edit it on its own",
            {"id": config.id, "max_depth": MAX_DEPTH},
        ) from None
