"""API keys: create (shown once), list, revoke. Admin only."""

from __future__ import annotations

from typing import Literal

from flask_openapi3 import APIBlueprint, Tag
from pydantic import BaseModel, Field

from promptyard import keys
from promptyard.api.auth import require_role
from promptyard.api.bodies import Body

api = APIBlueprint(
    "keys", __name__, url_prefix="/api/v1/keys", abp_tags=[Tag(name="keys")], abp_security=[{"bearer": []}]
)


class KeyCreate(Body):
    role: Literal["viewer", "editor", "admin"] = Field(description="What the key may do.")
    name: str = Field("", max_length=100, description="A label to recognise the key by.")


class KeyPath(BaseModel):
    key_id: int


@api.post("", responses={201: None})
@require_role("admin")
def create_key(body: KeyCreate):
    """Create an API key; the secret is in this response only."""
    row, secret = keys.create_key(body.role, body.name)
    return {**keys.key_to_dict(row), "key": secret}, 201


@api.get("")
@require_role("admin")
def list_keys():
    """List keys, without their secrets."""
    items = [keys.key_to_dict(row) for row in keys.list_keys()]
    return {"items": items, "total": len(items)}


@api.delete("/<int:key_id>", responses={204: None})
@require_role("admin")
def delete_key(path: KeyPath):
    """Revoke a key; it stops working at once."""
    keys.revoke_key(path.key_id)
    return "", 204
