"""The user as the rest of the code sees it (persistence records stay in storage)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

from creditml.auth.roles import Role


class User(BaseModel):
    id: str
    email: str
    role: Role
    created_at: datetime
