"""The query of GET /api/images/lvgl."""

from __future__ import annotations

import re

from pydantic import Field
from pydantic import field_validator

from iotsupport.api.schemas import Query
from iotsupport.api.schemas import QueryInt
from iotsupport.images.forwarding import FORWARDABLE_HEADERS
from iotsupport.images.lvgl import MAX_SIDE
from iotsupport.images.lvgl import ColorFormat

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class LvglImageQuery(Query):
    """Where the image is and how the display wants it."""

    url: str = Field(description="The image to fetch (http or https).")
    headers: str = Field(
        default="",
        description="Comma-separated names of headers of this request to send upstream, "
        "e.g. Authorization for a Home Assistant token. Only "
        + ", ".join(FORWARDABLE_HEADERS)
        + " can be forwarded, and never a credential of this server.",
    )
    width: QueryInt = Field(default=MAX_SIDE, ge=1, le=MAX_SIDE, description="Largest width.")
    height: QueryInt = Field(default=MAX_SIDE, ge=1, le=MAX_SIDE, description="Largest height.")
    format: ColorFormat = Field(
        default=ColorFormat.ARGB8888, description="LVGL color format of the result."
    )

    @field_validator("format", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _check_header_names(cls, value: str) -> str:
        for name in _split(value):
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a header name")
        return value

    @property
    def header_names(self) -> list[str]:
        return _split(self.headers)

    @property
    def box(self) -> tuple[int, int]:
        return self.width, self.height


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]
