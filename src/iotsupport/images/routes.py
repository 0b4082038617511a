"""/api/images/lvgl: the LVGL image proxy that displays call."""

from __future__ import annotations

from flask import Blueprint
from flask import Response

from iotsupport.api.spec import operation
from iotsupport.auth.access import requires_device
from iotsupport.credentials.headers import upstream_header
from iotsupport.errors import InvalidInput
from iotsupport.extensions import state
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
        400: "Bad query, or a header named in `headers` is missing",
        403: "Host not in IMAGE_PROXY_ALLOWED_HOSTS",
        422: "Not an image, or too many pixels",
        502: "The upstream fetch failed, timed out, answered non-2xx or sent too much",
    },
)
def lvgl_image(query: LvglImageQuery) -> Response:
    forwarded = {}
    for name in query.header_names:
        value = upstream_header(name)
        if value is None:
            raise InvalidInput(f"the request has no {name} header to forward", {"header": name})
        forwarded[name] = value
    image = state().image_proxy.lvgl_image(query.url, forwarded, query.box, query.format)
    response = Response(image.data, mimetype="application/octet-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Image-Width"] = str(image.width)
    response.headers["X-Image-Height"] = str(image.height)
    return response
