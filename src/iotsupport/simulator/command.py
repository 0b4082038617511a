"""`iotsupport simulate`: a simulated fleet against a running server."""

from __future__ import annotations

from pathlib import Path

import click


def parse_stages(text: str) -> list[int | str]:
    stages: list[int | str] = []
    for part in text.split(","):
        part = part.strip()
        stages.append(part if part.endswith("%") else int(part))
    return stages


@click.command("simulate")
@click.option(
    "--server", envvar="IOTSUPPORT_URL", default="http://127.0.0.1:3201", show_default=True
)
@click.option("--devices", "count", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--model", help="Provision the devices in this model (it must exist).")
@click.option(
    "--devices-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Use these devices instead: '<mac> <token>' per line.",
)
@click.option(
    "--save-devices",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the provisioned devices there (for --devices-file next time).",
)
@click.option(
    "--mac-prefix",
    default="02:51",
    show_default=True,
    help="1-5 bytes; the device's number follows.",
)
@click.option("--admin-token", envvar="IOTSUPPORT_TOKEN", help="Bearer token, when login is on.")
@click.option(
    "--mqtt-url",
    envvar=["DEVICE_MQTT_URL", "MQTT_URL"],
    help="Broker for the desired topics [env DEVICE_MQTT_URL, MQTT_URL]; none: poll only.",
)
@click.option("--mqtt-username", envvar="SIMULATOR_MQTT_USERNAME")
@click.option("--mqtt-password", envvar="SIMULATOR_MQTT_PASSWORD")
@click.option("--mqtt-connections", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--firmware-version", default="1.0.0", show_default=True, help="What they run at start."
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of devices that report their old version after an update.",
)
@click.option(
    "--crash-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Share of devices that panic (reset reason PANIC) on --crash-release.",
)
@click.option("--crash-release", help="The release that crashes [default: --rollout's].")
@click.option("--max-crash-rate", help='The rollout\'s max crash rate per stage, e.g. "20%".')
@click.option("--poll-seconds", type=click.FloatRange(min=0.1), default=60.0, show_default=True)
@click.option("--duration", type=click.FloatRange(min=0), help="Stop after this many seconds.")
@click.option("--until-version", help="Stop once every device runs it (or rolled it back).")
@click.option("--rollout", "rollout_version", help="Start a rollout of this release, watch it.")
@click.option("--stages", default="1,10%,100%", show_default=True, help="The rollout's stages.")
@click.option("--error-threshold", help='The rollout\'s error threshold, e.g. "20%".')
@click.option("--seed", type=int, default=1, show_default=True, help="Picks the failing devices.")
def simulate(
    server: str,
    count: int,
    model: str | None,
    devices_file: Path | None,
    save_devices: Path | None,
    mac_prefix: str,
    admin_token: str | None,
    mqtt_url: str | None,
    mqtt_username: str | None,
    mqtt_password: str | None,
    mqtt_connections: int,
    firmware_version: str,
    fail_rate: float,
    crash_rate: float,
    crash_release: str | None,
    max_crash_rate: str | None,
    poll_seconds: float,
    duration: float | None,
    until_version: str | None,
    rollout_version: str | None,
    stages: str,
    error_threshold: str | None,
    seed: int,
) -> None:
    """Run simulated devices against a server, as their firmware would, and print a summary.

    Without --duration, --until-version or --rollout it runs until Ctrl+C.
    """
    # Here, not at the top: server workers import the commands, and need no httpx loop.
    import httpx

    from iotsupport.simulator.fleet import FleetOptions
    from iotsupport.simulator.fleet import simulate as run_simulation
    from iotsupport.simulator.provision import ProvisioningFailed

    if devices_file is None and model is None:
        raise click.UsageError("give --model (to provision devices) or --devices-file")
    if rollout_version is not None and model is None:
        raise click.UsageError("--rollout needs --model")
    try:
        rollout_stages = parse_stages(stages)
    except ValueError:
        raise click.UsageError('--stages: numbers and shares, e.g. "1,10%,100%"') from None
    options = FleetOptions(
        server=server.rstrip("/"),
        devices=count,
        model=model,
        devices_file=devices_file,
        save_devices=save_devices,
        mac_prefix=mac_prefix,
        admin_token=admin_token,
        mqtt_url=mqtt_url,
        mqtt_username=mqtt_username,
        mqtt_password=mqtt_password,
        mqtt_connections=mqtt_connections,
        firmware_version=firmware_version,
        fail_rate=fail_rate,
        crash_rate=crash_rate,
        crash_release=crash_release,
        max_crash_rate=max_crash_rate,
        poll_seconds=poll_seconds,
        duration=duration,
        until_version=until_version,
        rollout_version=rollout_version,
        rollout_stages=rollout_stages,
        error_threshold=error_threshold,
        seed=seed,
        progress=click.echo,
    )
    try:
        report = run_simulation(options)
    except (ProvisioningFailed, RuntimeError, TimeoutError, OSError, httpx.HTTPError) as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None
    for line in report.lines():
        click.echo(line)
