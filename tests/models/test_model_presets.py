"""Presets: registered by the startup hook, idempotent, never overwriting a user's changes."""

from __future__ import annotations

from promptyard.db import db
from promptyard.models import service
from promptyard.plugins.presets import PRESETS


def test_presets_are_registered_once_as_not_downloaded(app, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    summary = service.register_presets()
    assert summary == f"{len(PRESETS)} preset(s) registered, 0 already there"
    models = {m["name"]: m for m in service.list_models()}
    assert set(models) == set(PRESETS)
    for name, preset in PRESETS.items():
        assert models[name]["is_preset"] is True
        assert models[name]["source"] == preset.source and models[name]["plugin"] == "transformers"
        assert models[name]["status"] == "not_downloaded"
    assert models["whiterabbitneo-33b"]["quantization"] == "4bit"
    assert models["instructcodet5p-16b"]["options"]["trust_remote_code"] is False


def test_running_again_keeps_the_users_changes(app):
    service.register_presets()
    row = service.get_model("codet5p-220m")
    row.params = {"max_new_tokens": 7}
    db.session.commit()
    assert service.register_presets() == f"0 preset(s) registered, {len(PRESETS)} already there"
    assert service.get_model("codet5p-220m").params == {"max_new_tokens": 7}
    assert len(service.list_models()) == len(PRESETS)


def test_a_user_model_with_a_preset_name_is_left_alone(app, tiny_gpt2_dir):
    service.register_model("codet5p-220m", "transformers", str(tiny_gpt2_dir))
    service.register_presets()
    mine = service.get_model("codet5p-220m")
    assert mine.source == str(tiny_gpt2_dir) and mine.is_preset is False


def test_the_startup_hook_runs_it(app):
    from promptyard.startup import run_startup_hooks

    lines = run_startup_hooks()
    assert any(line.startswith("model presets: ") for line in lines)
    assert {m["name"] for m in service.list_models()} >= set(PRESETS)
