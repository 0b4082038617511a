from __future__ import annotations

import typing as t

from pydantic import BaseModel
from pydantic import Field


class ErrorResponse(BaseModel):
    """The envelope of every refusal."""

    error: str = Field(description="What went wrong, for a person.")
    code: str = Field(description="Stable machine-readable code.")
    details: dict[str, t.Any] = Field(default_factory=dict)
