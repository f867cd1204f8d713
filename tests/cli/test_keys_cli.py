"""`promptyard keys create|list|revoke` through the real command group."""

from __future__ import annotations

from promptyard import keys
from promptyard.db.models import ApiKey


def test_create_prints_the_key_once_and_stores_its_hash(app, cli):
    result = cli("keys", "create", "--role", "editor", "--name", "ci")
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("pyd_")
    row = ApiKey.query.one()
    assert row.key_hash == keys.hash_key(secret) and row.role == "editor" and row.name == "ci"
    listing = cli("keys", "list")
    assert listing.exit_code == 0 and "editor" in listing.output and "ci" in listing.output
    assert secret not in listing.output
    assert keys.authenticate(secret, None).role == "editor"


def test_list_with_no_keys_explains_auth(cli):
    result = cli("keys", "list")
    assert result.exit_code == 0 and "No API keys" in result.output


def test_revoke_stops_the_key(app, cli):
    row, secret = keys.create_key("viewer")
    result = cli("keys", "revoke", str(row.id))
    assert result.exit_code == 0 and f"Revoked key {row.id}" in result.output
    assert keys.authenticate(secret, None) is None


def test_bad_role_and_unknown_id_fail_cleanly(cli):
    bad_role = cli("keys", "create", "--role", "root")
    assert bad_role.exit_code == 2 and "root" in bad_role.output
    missing = cli("keys", "revoke", "42")
    assert missing.exit_code == 2
    assert "No active API key with id 42" in missing.output
    assert "Traceback" not in missing.output
    assert ApiKey.query.count() == 0
