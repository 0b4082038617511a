"""The CI's upload commands: `upload-asset` and `upload-release`, signed (assets/signing.py)."""

from __future__ import annotations

import hashlib
from datetime import UTC
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import click

from iotsupport.assets.signing import ASSET_PURPOSE
from iotsupport.assets.signing import RELEASE_PURPOSE
from iotsupport.assets.signing import load_signing_key
from iotsupport.assets.signing import sign_upload

SIGNING_KEY = click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PEM RSA private key; the server verifies with SIGNING_KEY_PATH.",
)
SERVER_URL = click.option(
    "--url", required=True, envvar="IOTSUPPORT_URL", help="The server, e.g. http://iotsupport:3201."
)
BEARER = click.option("--token", envvar="IOTSUPPORT_TOKEN", help="Bearer token, when login is on.")
TIMEOUT = click.option("--timeout", type=float, default=300.0, show_default=True, help="Seconds.")


@click.command("upload-asset")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@SERVER_URL
@SIGNING_KEY
@click.option("--name", help="Store it under this name [default: FILE's own name].")
@BEARER
@TIMEOUT
def upload_asset(
    file: Path, url: str, key_path: Path, name: str | None, token: str | None, timeout: float
) -> None:
    """Sign FILE's name, SHA-256 and a fresh timestamp, and upload it (what a CI job runs)."""
    base = url.rstrip("/")
    endpoint = base if base.endswith("/api/assets") else f"{base}/api/assets"
    stored_as = name or file.name
    _signed_upload(endpoint, file, key_path, ASSET_PURPOSE, stored_as, stored_as, token, timeout)


@click.command("upload-release")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="The device model's code.")
@SERVER_URL
@SIGNING_KEY
@BEARER
@TIMEOUT
def upload_release(
    file: Path, model: str, url: str, key_path: Path, token: str | None, timeout: float
) -> None:
    """Sign FILE for MODEL and upload it as a release (the version comes from the image)."""
    endpoint = f"{url.rstrip('/')}/api/models/{quote(model, safe='')}/releases"
    _signed_upload(endpoint, file, key_path, RELEASE_PURPOSE, model, file.name, token, timeout)


def _signed_upload(
    endpoint: str,
    file: Path,
    key_path: Path,
    purpose: str,
    signed_name: str,
    filename: str,
    token: str | None,
    timeout: float,
) -> None:
    """POST the signed fields, then the file; print the answer, fail on a refusal."""
    import httpx  # here, not at the top: server workers import this module too

    try:
        key = load_signing_key(key_path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    sha256 = _sha256_of(file)
    # Microseconds: PKCS#1 v1.5 signatures are deterministic, and the server accepts
    # each (timestamp, signature) pair once, so two uploads must never share a timestamp.
    timestamp = datetime.now(UTC).isoformat(timespec="microseconds")
    signature = sign_upload(
        key, timestamp=timestamp, name=signed_name, sha256=sha256, purpose=purpose
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with file.open("rb") as content:  # httpx streams it in chunks, after the fields
        try:
            response = httpx.post(
                endpoint,
                data={"timestamp": timestamp, "sha256": sha256, "signature": signature},
                files={"file": (filename, content, "application/octet-stream")},
                headers=headers,
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            raise click.ClickException(f"could not upload to {endpoint}: {exc}") from None
    if response.is_success:
        click.echo(response.text)
        return
    click.echo(response.text, err=True)
    raise click.ClickException(f"the server refused the upload: HTTP {response.status_code}")


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
