"""Models page: status table, register (with garbage rejected), load and unload."""

from __future__ import annotations

from tests.ui.ui_helpers import assert_no_crash, texts


def test_empty_registry_says_what_to_do(open_page):
    at = open_page("models")
    assert "No model is registered yet" in texts(at)


def test_lists_models_and_unloads(open_page, echo_model):
    at = open_page("models")
    table = at.dataframe[0].value
    assert list(table["name"]) == ["echo"]
    next(b for b in at.button if b.label == "Unload").click().run()
    assert_no_crash(at)
    assert "echo is" in texts(at)


def test_register_rejects_bad_json_and_bad_names(open_page, api):
    at = open_page("models")
    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Name"].input("good-name")
    form_inputs["Source"].input("/nowhere")
    next(t for t in at.text_area if t.label == "Pricing (JSON)").input("{not json")
    next(b for b in at.button if b.label == "Register").click().run()
    assert_no_crash(at)
    assert "Pricing is not valid JSON" in texts(at)
    assert api.list_models()["total"] == 0

    form_inputs = {t.label: t for t in at.text_input}
    form_inputs["Name"].input("Bad Name")
    next(t for t in at.text_area if t.label == "Pricing (JSON)").input("{}")
    next(b for b in at.button if b.label == "Register").click().run()
    assert_no_crash(at)
    assert "'name'" in texts(at)
    assert api.list_models()["total"] == 0


def test_missing_weights_are_explained_and_load_is_disabled(open_page, api):
    api.register_model("ghost", "transformers", "nobody/not-downloaded-anywhere")
    assert api.get_model("ghost")["status"] == "not_downloaded"
    at = open_page("models")
    assert_no_crash(at)
    assert any("Weights are not downloaded for: ghost" in w.value for w in at.warning)
    assert next(b for b in at.button if b.label == "Load").disabled


def test_load_a_tiny_transformers_model(open_page, api, tiny_gpt2_dir):
    api.register_model("tiny", "transformers", str(tiny_gpt2_dir))
    at = open_page("models")
    next(b for b in at.button if b.label == "Load").click().run()
    assert_no_crash(at)
    assert api.get_model("tiny")["status"] == "loaded"
    assert "tiny is loaded." in texts(at)


def test_pull_shows_why_the_download_failed(open_page, api):
    # The hub is unreachable here, so the pull really runs and really fails; the page shows the API's reason.
    api.register_model("ghost", "transformers", "nobody/not-downloaded-anywhere")
    at = open_page("models")
    next(b for b in at.button if b.label == "Pull").click().run()
    assert_no_crash(at)
    pull = api.pull_status("ghost")
    assert pull["state"] == "failed"
    assert f"Pulling ghost failed: {pull['error']['message']}" in [e.value for e in at.error]
    assert api.get_model("ghost")["status"] == "not_downloaded"


def test_pull_is_offered_only_for_models_without_weights(open_page, echo_model):
    at = open_page("models")
    assert not any(b.label == "Pull" for b in at.button)


def register_form(at):
    """The Register form's inputs (the page's last ones with these labels; a fix form may come first)."""
    inputs = {t.label: t for t in at.text_input}
    areas = {t.label: t for t in at.text_area}
    return inputs, areas


def test_register_an_openai_compatible_model_with_options_then_fix_and_remove_it(open_page, api):
    at = open_page("models")
    inputs, areas = register_form(at)
    inputs["Name"].input("remote")
    next(s for s in at.selectbox if s.label == "Plugin").set_value("openai-compatible")
    inputs["Source"].input("http://127.0.0.1:9/v1")
    next(b for b in at.button if b.label == "Register").click().run()
    assert_no_crash(at)
    assert "needs the name the server serves it under" in texts(at)
    assert api.list_models()["total"] == 0  # validated before saving

    inputs, areas = register_form(at)
    areas["Options (JSON)"].input('{"model": "wrong-name"}')
    next(b for b in at.button if b.label == "Register").click().run()
    assert_no_crash(at)
    assert api.get_model("remote")["options"] == {"model": "wrong-name"}
    # Port 9 refuses connections: the page says why the model is in error, not only that it is.
    assert any("remote:" in e.value and "could not be reached" in e.value for e in at.error)

    next(t for t in at.text_area if t.key == "edit::remote::options").input('{"model": "served"}')
    next(t for t in at.text_area if t.key == "edit::remote::params").input('{"max_new_tokens": 32}')
    next(b for b in at.button if b.label == "Save changes").click().run()
    assert_no_crash(at)
    fixed = api.get_model("remote")
    assert fixed["options"] == {"model": "served"} and fixed["params"] == {"max_new_tokens": 32}
    assert "Saved remote" in texts(at)

    next(t for t in at.text_area if t.key == "edit::remote::params").input('{"temperature": "hot"}')
    next(b for b in at.button if b.label == "Save changes").click().run()
    assert "temperature" in texts(at) and api.get_model("remote")["params"] == {"max_new_tokens": 32}

    next(b for b in at.button if b.label == "Remove").click().run()
    assert_no_crash(at)
    assert api.list_models()["total"] == 0 and "Removed remote" in texts(at)


def test_a_model_in_use_is_archived_not_removed(open_page, api, echo_model):
    api.execute("echo", input="a b")
    at = open_page("models")
    next(b for b in at.button if b.label == "Remove").click().run()
    assert_no_crash(at)
    assert any("archive it instead" in e.value for e in at.error)
    assert [m["name"] for m in api.list_models()["items"]] == ["echo"]
    next(b for b in at.button if b.label == "Archive").click().run()
    assert_no_crash(at)
    assert api.list_models()["total"] == 0 and "Archived echo" in texts(at)
