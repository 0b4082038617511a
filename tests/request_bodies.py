"""A valid request body for each body schema, for the tests that walk every operation."""

from __future__ import annotations

import typing as t

VALID_BODIES: dict[str, dict[str, t.Any]] = {
    "ConfigCreateSchema": {"mac_address": "aa:bb:cc:dd:ee:09", "content": {"a": 1}},
    "ConfigUpdateSchema": {"content": {"deviceName": "x"}},
    "RollbackSchema": {"version": 1},
    "ModelCreateSchema": {"code": "x", "name": "X", "schema": {"type": "object"}},
    "ModelUpdateSchema": {"name": "X", "schema": {"type": "object"}},
    "DraftSchema": {"content": {"a": 1}},
    "BulkSchema": {"select": {"ids": [1]}, "patch": {"a": 1}},
    "UndoSchema": {"skip_changed": False},
    "ProvisioningSchema": {"format": "json"},
    "RolloutCreateSchema": {"version": "x", "stages": [1, "100%"], "error_threshold": "50%"},
    "CrashStatusSchema": {"status": "resolved"},
    "SkipSchema": {"config_ids": [1]},
}
