"""The base of every JSON request body."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Body(BaseModel):
    """A JSON request body: unknown fields and values of the wrong type ("1" for a number, 1 or "yes" for a
    boolean) are a 422 naming the field, never converted. Query strings are text by nature and stay lax."""

    model_config = ConfigDict(extra="forbid", strict=True)
