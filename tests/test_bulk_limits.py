"""A bulk change's memory is bounded (issue 20 item 7): 180 configs previewed with a
1 MiB patch took a worker to 886 MB. Now a patch times its configs is at most
MAX_PATCH_VOLUME (413 bulk_too_large, preview and apply alike), and one preview's
diffs are at most PREVIEW_DIFF_CHARS together; the rest say their diff is left out.
Memory before and after: bench/bulk_preview_memory.py."""

from __future__ import annotations

import math

from conftest import assert_error
from conftest import random_mac
from flask.testing import FlaskClient
from test_device_models import create_config

from iotsupport.change_sets.rules import MAX_PATCH_VOLUME
from iotsupport.change_sets.rules import PREVIEW_DIFF_CHARS

BULK = "/api/configs/bulk"


def test_a_patch_over_too_many_configs_is_refused_before_any_work(client: FlaskClient) -> None:
    patch = {"blob": "x" * 1_000_000}
    count = math.ceil(MAX_PATCH_VOLUME / 1_000_000)  # just over the limit
    ids = [create_config(client, random_mac(), {"n": index})["id"] for index in range(count)]
    preview = client.post(BULK, json={"select": {"ids": ids}, "patch": patch})
    refusal = assert_error(preview, 413, "bulk_too_large")
    assert refusal["details"]["configs"] == count
    assert refusal["details"]["max_bytes"] == MAX_PATCH_VOLUME
    expect = {str(config_id): "x" for config_id in ids}
    body = {"select": {"ids": ids}, "patch": patch, "dry_run": False, "expect": expect}
    assert_error(client.post(BULK, json=body), 413, "bulk_too_large")
    # One config fewer fits.
    preview = client.post(BULK, json={"select": {"ids": ids[1:]}, "patch": patch})
    assert preview.status_code == 200
    assert client.get(f"/api/configs/{ids[0]}").get_json()["version"] == 1


def test_the_diffs_of_one_preview_are_bounded_together(client: FlaskClient) -> None:
    patch = {"blob": "y" * 100_000}
    count = 2 * PREVIEW_DIFF_CHARS // 100_000
    ids = [create_config(client, random_mac(), {"n": index})["id"] for index in range(count)]
    response = client.post(BULK, json={"select": {"ids": ids}, "patch": patch})
    assert response.status_code == 200
    preview = response.get_json()
    rows = preview["changes"]
    assert preview["count"] == preview["changed"] == count
    assert sum(len(row["diff"]) for row in rows) <= PREVIEW_DIFF_CHARS
    omitted = [row for row in rows if row["diff_omitted"]]
    assert preview["diffs_omitted"] == len(omitted) >= count // 3
    assert all(row["diff"] == "" for row in omitted)
    shown = [row for row in rows if not row["diff_omitted"]]
    assert shown and all('+  "blob": "yyy' in row["diff"] for row in shown)
    assert len(response.data) < PREVIEW_DIFF_CHARS + 1_000_000
    # Every row still has what apply needs, and apply changes them all.
    expect = {str(row["id"]): row["etag"] for row in rows}
    body = {"select": {"ids": ids}, "patch": patch, "dry_run": False, "expect": expect}
    applied = client.post(BULK, json=body)
    assert applied.status_code == 201
    assert len(applied.get_json()["changed"]) == count
