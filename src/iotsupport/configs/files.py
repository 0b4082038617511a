"""The earlier file-based layout: one `aa-bb-cc-dd-ee-ff.json` per device.

`import_file` is the rule for one file, shared by `iotsupport import-dir` and the web
import (POST /api/configs/import): each file is its own savepoint, so a file that is
refused leaves nothing behind and the others still count.
"""

from __future__ import annotations

import os
import tempfile
import typing as t
from dataclasses import dataclass
from pathlib import Path

from iotsupport.configs.content import normalize_mac
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.service import ConfigService
from iotsupport.db import savepoint
from iotsupport.errors import Conflict
from iotsupport.errors import DuplicateKey
from iotsupport.errors import InvalidInput
from iotsupport.errors import SchemaViolation

Outcome = t.Literal["created", "updated", "unchanged", "skipped"]
OUTCOMES: tuple[Outcome, ...] = ("created", "updated", "unchanged", "skipped")


@dataclass(frozen=True)
class ImportResult:
    file: str
    outcome: Outcome
    reason: str | None = None  # why it was skipped
    mac_address: str | None = None


def file_name(mac_address: str) -> str:
    return mac_address.replace(":", "-") + ".json"


def import_file(
    service: ConfigService, name: str, data: bytes, model: str | None = None
) -> ImportResult:
    """Create or update the config a file names (in `model`, if given), or say why not.

    `name` is the file's name, after its last "/": `aa-bb-cc-dd-ee-ff.json`, the MAC in
    any spelling. A file that does not meet the model's schema is skipped, with why.
    """
    base = name.rsplit("/", 1)[-1]
    mac = None
    try:
        if not base.endswith(".json"):
            raise InvalidInput("not a .json file")
        mac = normalize_mac(base.removesuffix(".json"))
        try:
            content = data.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidInput("not UTF-8 text") from None
        parse_json_object(content)
        with savepoint(service.session):
            outcome = service.import_document(mac, content, model)
    except (InvalidInput, Conflict) as exc:
        return ImportResult(name, "skipped", _reason(exc), mac)
    return ImportResult(name, outcome, None, mac)


def _reason(exc: InvalidInput | Conflict) -> str:
    reason = "bad name" if exc.details.get("mac_address") is not None else exc.message
    if isinstance(exc, DuplicateKey):
        reason += f" (at {exc.details['pointer']})"
    if isinstance(exc, SchemaViolation):
        reason += ": " + "; ".join(
            f"{error['path'] or '/'} {error['message']}" for error in exc.details["errors"]
        )
    return reason


def totals(results: t.Iterable[ImportResult]) -> dict[Outcome, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        counts[result.outcome] += 1
    return counts


def import_configs(
    service: ConfigService, directory: Path, model: str | None = None
) -> t.Iterator[str]:
    """Create or update a config per file (in `model`, if given); yields one line per file,
    then a total. A file that does not meet the model's schema is skipped, with why."""
    results = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        result = import_file(service, path.name, path.read_bytes(), model)
        results.append(result)
        if result.outcome == "skipped":
            yield f"skipped   {path.name}: {result.reason}"
        else:
            yield f"{result.outcome:<9} {path.name} -> {result.mac_address}"
    yield ", ".join(f"{count} {name}" for name, count in totals(results).items())


def export_configs(service: ConfigService, directory: Path) -> t.Iterator[str]:
    """Write every config verbatim; each file appears whole or not at all."""
    directory.mkdir(parents=True, exist_ok=True)
    configs = service.all_configs()
    for config in configs:
        target = directory / file_name(config.mac_address)
        handle, temp_name = tempfile.mkstemp(dir=directory, prefix=".export-")
        try:
            with os.fdopen(handle, "wb") as temp_file:
                temp_file.write(config.content.encode("utf-8"))
            os.replace(temp_name, target)
        except BaseException:
            os.unlink(temp_name)
            raise
        yield f"exported  {target.name}"
    yield f"{len(configs)} exported"
