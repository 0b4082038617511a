"""Provisioning bundles: what a device needs to join the fleet, as JSON or an NVS image.

The NVS image is made by Espressif's own generator (`esp-idf-nvs-partition-gen`),
format version 2, namespace `iotsupport`, every value a string except `bundle_ver`:

| key | type | value |
|---|---|---|
| `bundle_ver` | u8 | 1 (this layout) |
| `server_url` | string | where the server is, e.g. `http://iot.example.com:3201` |
| `mac` | string | the device's MAC, `aa:bb:cc:dd:ee:ff` |
| `token` | string | the device token (`iotd_...`) |
| `mqtt_url` | string | the broker (absent when the server has none) |
| `mqtt_user` | string | the broker user name (with MQTT_DEVICE_ACCOUNTS=dynsec: the MAC) |
| `wifi_ssid` | string | only when the admin typed it |
| `wifi_pass` | string | only when the admin typed it |
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from iotsupport.errors import InvalidInput

NVS_NAMESPACE = "iotsupport"
NVS_BUNDLE_VERSION = 1
PAGE_SIZE = 4096
MIN_PARTITION_SIZE = 3 * PAGE_SIZE  # the generator's minimum for a read/write partition
DEFAULT_PARTITION_SIZE = 0x6000  # ESP-IDF's default `nvs` partition
MAX_PARTITION_SIZE = 0x100000


@dataclass(frozen=True)
class Bundle:
    mac_address: str
    server_url: str
    token: str
    mqtt_url: str | None
    mqtt_username: str | None
    wifi_ssid: str | None
    wifi_password: str | None

    @property
    def config_url(self) -> str:
        return f"{self.server_url}/api/configs/{self.mac_address}.json"

    def nvs_entries(self) -> list[tuple[str, str]]:
        """(key, string value) pairs, in the order they are written."""
        values = [
            ("server_url", self.server_url),
            ("mac", self.mac_address),
            ("token", self.token),
            ("mqtt_url", self.mqtt_url),
            ("mqtt_user", self.mqtt_username),
            ("wifi_ssid", self.wifi_ssid),
            ("wifi_pass", self.wifi_password),
        ]
        return [(key, value) for key, value in values if value is not None]


def nvs_image(bundle: Bundle, partition_size: int) -> bytes:
    """The bundle as an NVS partition image of `partition_size` bytes."""
    # Imported here: the generator brings a CLI toolkit no other request needs.
    from esp_idf_nvs_partition_gen import nvs_partition_gen as nvs

    output = io.BytesIO()
    # The generator keeps the last page free for NVS itself, as `generate` does.
    image = nvs.nvs_open(output, partition_size - PAGE_SIZE, nvs.Page.VERSION2)
    try:
        nvs.write_entry(image, NVS_NAMESPACE, "namespace", "", "")
        nvs.write_entry(image, "bundle_ver", "data", "u8", str(NVS_BUNDLE_VERSION))
        for key, value in bundle.nvs_entries():
            nvs.write_entry(image, key, "data", "string", value)
        nvs.nvs_close(image)
    except (nvs.InsufficientSizeError, nvs.PageFullError):
        raise InvalidInput(
            "the bundle does not fit in a partition of this size", {"field": "partition_size"}
        ) from None
    except nvs.InputError:  # its message may quote a value: a password, say
        raise InvalidInput("the bundle cannot be written as NVS") from None
    return output.getvalue()
