"""The base of every JSON request body, and the bounded integer types bodies and queries use."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# The largest id or count a column can hold on every backend: PostgreSQL's INTEGER (SQLite's goes to 2**63 - 1).
# A number past it would fail inside the database driver (OverflowError, DataError) instead of as a 422.
MAX_DB_INT = 2**31 - 1

# A row id or version number: 1 up to what the database stores.
DbId = Annotated[int, Field(ge=1, le=MAX_DB_INT)]
# A count that may be 0: offsets and the like.
DbCount = Annotated[int, Field(ge=0, le=MAX_DB_INT)]



def _in_utc(value: datetime) -> datetime:
    """The instant in UTC, as the database compares it; a date that leaves years 1-9999 there is invalid."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(timezone.utc)
    except OverflowError:
        raise ValueError("is out of range once converted to UTC (years 1 to 9999)") from None


# A moment a query filters on (since, until): converted to UTC here, so an out-of-range one is a 422 naming it.
UtcDateTime = Annotated[datetime, AfterValidator(_in_utc)]


class Body(BaseModel):
    """A JSON request body: unknown fields and values of the wrong type ("1" for a number, 1 or "yes" for a
    boolean) are a 422 naming the field, never converted. Query strings are text by nature and stay lax."""

    model_config = ConfigDict(extra="forbid", strict=True)
