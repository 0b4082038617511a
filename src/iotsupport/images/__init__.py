"""The LVGL image proxy: fetch an image, fit it to a display, encode it for LVGL."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram

from iotsupport.errors import AppError
from iotsupport.errors import HostNotAllowed
from iotsupport.errors import InvalidInput
from iotsupport.errors import ServiceUnavailable
from iotsupport.errors import UnprocessableImage
from iotsupport.errors import UpstreamFailed
from iotsupport.images import lvgl
from iotsupport.images.convert import fitted_image
from iotsupport.images.convert import release_memory
from iotsupport.images.destinations import DestinationPolicy
from iotsupport.images.fetch import Fetcher
from iotsupport.images.fetch import FetchLimits
from iotsupport.images.fetch import parse_url
from iotsupport.images.lvgl import ColorFormat
from iotsupport.settings import Settings

__all__ = ["ColorFormat", "ImageProxy", "LvglImage"]

_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
_OUTCOMES: tuple[tuple[type[AppError], str], ...] = (
    (InvalidInput, "invalid"),
    (HostNotAllowed, "forbidden"),
    (UpstreamFailed, "upstream_error"),
    (UnprocessableImage, "unprocessable"),
    (ServiceUnavailable, "busy"),
)
# How long a caller refused for lack of a conversion slot should wait.
BUSY_RETRY_SECONDS = 2


class ImageProxyBusy(ServiceUnavailable):
    code = "image_proxy_busy"
    headers = {"Retry-After": str(BUSY_RETRY_SECONDS)}


class ConversionSlots:
    """At most `size` conversions (download, decode, encode) at once per process; one
    more is refused, never queued.

    The downloaded body and the decoded image are the proxy's big allocations:
    bounding how many exist at once bounds a worker's memory, and refusing (rather
    than queueing) keeps the worker's threads free for the devices' own requests.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = threading.BoundedSemaphore(size)

    @contextmanager
    def taken(self) -> Iterator[None]:
        if not self._free.acquire(blocking=False):
            raise ImageProxyBusy(
                f"the image proxy is converting {self.size} image(s) already; "
                f"try again in {BUSY_RETRY_SECONDS} s",
                {"retry_after_seconds": BUSY_RETRY_SECONDS},
            )
        try:
            yield
        finally:
            self._free.release()


@dataclass(frozen=True)
class LvglImage:
    parts: list[bytes]  # the file, in consecutive chunks
    width: int
    height: int

    @property
    def size(self) -> int:
        return sum(len(part) for part in self.parts)


class ImageMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.conversions = Counter(
            "iotsupport_image_conversions",
            "LVGL image proxy requests by color format and outcome (ok, invalid, forbidden, "
            "upstream_error, unprocessable, busy, error).",
            ["format", "outcome"],
            registry=registry,
        )
        self.fetch_seconds = Histogram(
            "iotsupport_image_fetch_seconds",
            "Time to download the upstream image, redirects included.",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )
        self.conversion_seconds = Histogram(
            "iotsupport_image_conversion_seconds",
            "Time to decode, fit and encode a downloaded image.",
            buckets=_SECONDS_BUCKETS,
            registry=registry,
        )


class ImageProxy:
    """Long-lived (one per process): it keeps the HTTP client and its connections."""

    def __init__(self, settings: Settings, registry: CollectorRegistry) -> None:
        self._fetcher = Fetcher(
            FetchLimits(
                connect_timeout=settings.image_proxy_connect_timeout_seconds,
                total_timeout=settings.image_proxy_timeout_seconds,
                max_bytes=settings.image_proxy_max_bytes,
            ),
            DestinationPolicy.parse(settings.image_proxy_allowed_hosts),
        )
        self._max_pixels = settings.image_proxy_max_pixels
        self._slots = ConversionSlots(settings.image_proxy_max_conversions)
        self._metrics = ImageMetrics(registry)

    def close(self) -> None:
        self._fetcher.close()

    def lvgl_image(
        self,
        url: str,
        headers: Mapping[str, str],
        box: tuple[int, int],
        color_format: ColorFormat,
    ) -> LvglImage:
        """Fetch `url` (sending `headers`), fit it within `box`, encode it as LVGL v9."""
        outcome = "error"
        try:
            image = self._convert(url, headers, box, color_format)
            outcome = "ok"
            return image
        except AppError as exc:
            outcome = next((name for kind, name in _OUTCOMES if isinstance(exc, kind)), "error")
            raise
        finally:
            self._metrics.conversions.labels(color_format.value, outcome).inc()

    def _convert(
        self,
        url: str,
        headers: Mapping[str, str],
        box: tuple[int, int],
        color_format: ColorFormat,
    ) -> LvglImage:
        parsed = parse_url(url)
        # The slot covers the download too: the body is the other big allocation.
        with self._slots.taken():
            started = time.perf_counter()
            body = self._fetcher.fetch(parsed, headers)
            fetched = time.perf_counter()
            self._metrics.fetch_seconds.observe(fetched - started)
            try:
                image = fitted_image(body, box, self._max_pixels)
                del body
                parts = lvgl.encode_parts(image, color_format)
                width, height = image.size
                del image
            finally:
                release_memory()
        self._metrics.conversion_seconds.observe(time.perf_counter() - fetched)
        return LvglImage(parts, width, height)
