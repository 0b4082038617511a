"""The earlier file-based layout: one `aa-bb-cc-dd-ee-ff.json` per device."""

from __future__ import annotations

import os
import tempfile
import typing as t
from pathlib import Path

from iotsupport.configs.content import normalize_mac
from iotsupport.configs.content import parse_json_object
from iotsupport.configs.service import ConfigService
from iotsupport.errors import InvalidInput
from iotsupport.errors import SchemaViolation


def file_name(mac_address: str) -> str:
    return mac_address.replace(":", "-") + ".json"


def import_configs(
    service: ConfigService, directory: Path, model: str | None = None
) -> t.Iterator[str]:
    """Create or update a config per file (in `model`, if given); yields one line per file,
    then a total. A file that does not meet the model's schema is skipped, with why."""
    totals: dict[str, int] = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0}
    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        try:
            if path.suffix != ".json":
                raise InvalidInput("not a .json file")
            mac = normalize_mac(path.stem)
            try:
                content = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidInput("not UTF-8 text") from None
            parse_json_object(content)
            outcome: str = service.import_document(mac, content, model)
        except InvalidInput as exc:
            reason = "bad name" if exc.details.get("mac_address") is not None else exc.message
            if isinstance(exc, SchemaViolation):
                reason += ": " + "; ".join(
                    f"{error['path'] or '/'} {error['message']}" for error in exc.details["errors"]
                )
            totals["skipped"] += 1
            yield f"skipped   {path.name}: {reason}"
            continue
        totals[outcome] += 1
        yield f"{outcome:<9} {path.name} -> {mac}"
    yield ", ".join(f"{count} {name}" for name, count in totals.items())


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
