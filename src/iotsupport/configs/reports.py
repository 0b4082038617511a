"""What the device routes hand their reports to: the one intake (device_reports/).

The device (this package) is the hub: it names the interface and never imports the
intake; create_app plugs the intake in (`AppState.reports`).
"""

from __future__ import annotations

import typing as t


class DeviceReports(t.Protocol):
    def fetched(
        self, config_id: int, version: int, environ: t.Mapping[str, t.Any], *, verified: bool
    ) -> None:
        """A config fetch (the WSGI environ): last seen, and the firmware it reports.

        `verified`: a device credential proved the request. Returns once the report is as
        durable as the intake's rule for it says (see device_reports/)."""

    def credential_used(self, config_id: int, environ: t.Mapping[str, t.Any]) -> None:
        """A device credential was used (when, and from which address)."""

    def start(self) -> None:
        """Write in the background from now on."""

    def stop(self) -> None:
        """Stop writing in the background, and write what is left."""

    def flush(self) -> int:
        """Write what is pending now; returns how many reports were written."""
