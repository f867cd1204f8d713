"""Preset models are plain data the models service registers."""

from __future__ import annotations

import pytest

from promptyard.plugins.base import GenerationParams
from promptyard.plugins.presets import PRESETS
from promptyard.plugins.textgen import PROMPT_FORMATS
from promptyard.plugins.transformers_backend import TransformersPlugin


def test_the_issue_presets_are_all_there():
    assert set(PRESETS) == {
        "whiterabbitneo-33b", "codet5p-220m", "codet5p-770m-py", "instructcodet5p-16b",
        "qwen2.5-coder-0.5b-instruct",
    }
    assert PRESETS["whiterabbitneo-33b"].quantization == "4bit"
    assert PRESETS["whiterabbitneo-33b"].options["prompt_format"] in PROMPT_FORMATS
    assert PRESETS["instructcodet5p-16b"].options["trust_remote_code"] is False
    assert "trust_remote_code" in PRESETS["instructcodet5p-16b"].description


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_is_complete_and_valid(name, tmp_path):
    preset = PRESETS[name]
    GenerationParams.model_validate(preset.params)
    assert preset.description and preset.memory
    assert "gpu_hour" in preset.pricing
    row = preset.to_dict()
    assert row["is_preset"] is True and row["name"] == name
    assert preset.memory in row["description"]
    plugin = TransformersPlugin(preset.source, quantization=preset.quantization,
                                options={**preset.options, "cache_dir": str(tmp_path)})
    assert plugin.status() == "not_downloaded"
