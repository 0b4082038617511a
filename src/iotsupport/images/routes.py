"""/api/images/lvgl: the LVGL image proxy that displays call."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from iotsupport.api.spec import operation
from iotsupport.auth import cookie_secrets
from iotsupport.auth.access import requires_device
from iotsupport.credentials.headers import UpstreamHeaders
from iotsupport.extensions import state
from iotsupport.images.forwarding import forwarded_headers
from iotsupport.images.schemas import LvglImageQuery

bp = Blueprint("images", __name__, url_prefix="/api/images")


@bp.get("/lvgl")
@requires_device()
@operation(
    "Fetch an image, fit it to a display and return it as an LVGL v9 image (a device token "
    "as DEVICE_AUTH says; the upstream's token travels in X-Upstream-Authorization)",
    tag="devices",
    query=LvglImageQuery,
    responses={
        200: "LVGL v9 image file (application/octet-stream); X-Image-Width/-Height",
        400: "Bad query; a header named in `headers` is missing or may not be forwarded",
        403: "The destination is not allowed (IMAGE_PROXY_ALLOWED_HOSTS)",
        422: "Not an image, damaged, or too many pixels",
        502: "No usable answer upstream: unreachable, non-2xx, too slow, too large",
        503: "Too many conversions at once in this worker (Retry-After)",
    },
    database=False,
)
def lvgl_image(query: LvglImageQuery) -> Response:
    settings = state().settings
    forwarded = forwarded_headers(
        query.header_names,
        UpstreamHeaders(),
        own_credentials=cookie_secrets(),
        issuer=settings.oidc_issuer_url if settings.oidc_enabled else None,
    )
    image = state().image_proxy.lvgl_image(query.url, forwarded, query.box, query.format)
    response = Response(image.parts, mimetype="application/octet-stream")
    response.content_length = image.size
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Image-Width"] = str(image.width)
    response.headers["X-Image-Height"] = str(image.height)
    return response
