from __future__ import annotations

from pydantic import BaseModel
from pydantic import Field


class SelfSchema(BaseModel):
    """Who is logged in. With login off: an anonymous admin and auth_enabled false."""

    subject: str
    email: str | None
    name: str | None
    roles: list[str] = Field(description="Our roles only: admin, asset-uploader.")
    auth_enabled: bool = Field(description="False when the server runs without login.")


class LogoutSchema(BaseModel):
    """Cookies cleared; open end_session_url (when not null) to end the provider's session too."""

    end_session_url: str | None
