"""Training page: pick a base model and data (with counts), start, watch loss and progress, and see the new model
evaluated beside its base."""

from __future__ import annotations

import time

from tests.training.conftest import TASKS, tasks_jsonl, trainable_gpt2_dir  # noqa: F401  (a fixture)
from tests.ui.ui_helpers import assert_no_crash, texts


def wait_for(fetch, done, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_without_a_transformers_model_it_says_what_to_do(open_page, echo_model):
    at = open_page("training")
    assert "Register a transformers model" in texts(at)
    assert "No training yet." in texts(at)


def test_start_a_training_watch_it_and_compare_the_new_model(open_page, api, trainable_gpt2_dir):
    api.register_model("tiny-base", "transformers", str(trainable_gpt2_dir), params={"max_new_tokens": 24})
    api.register_dataset("tiny-code", tasks_jsonl())
    at = open_page("training")
    next(m for m in at.multiselect if m.label == "Data from").set_value(["dataset"]).run()
    assert_no_crash(at)
    assert "164 sft rows (dataset: 164)" in texts(at)  # HumanEval's reference solutions, the first dataset
    next(s for s in at.selectbox if s.label.startswith("Dataset")).select("tiny-code").run()
    assert f"{len(TASKS)} sft rows (dataset: {len(TASKS)})" in texts(at)
    next(t for t in at.text_input if t.label == "New model name").input("tiny-tuned").run()
    numbers = {n.label: n for n in at.number_input}
    numbers["learning_rate"].set_value(0.01)
    numbers["max_steps (-1: epochs)"].set_value(40).run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert_no_crash(at)
    assert "Training 1 started: sft of tiny-base -> tiny-tuned." in texts(at)

    done = wait_for(lambda: api.get_training(1), lambda t: t["status"] not in ("queued", "running"))
    assert done["status"] == "succeeded", done["error"]
    for model in ("tiny-base", "tiny-tuned"):
        run = api.start_eval("tiny-code", model)
        wait_for(lambda: api.get_eval(run["id"]), lambda r: r["status"] in ("succeeded", "failed"))
    at.run()
    assert_no_crash(at)
    expander = at.expander[0]
    assert expander.label == "#1 sft tiny-base -> tiny-tuned: succeeded (40/40 steps)"
    assert len(at.get("vega_lite_chart")) == 1  # the loss chart
    table = at.dataframe[0].value
    assert list(table["model"]) == ["tiny-base", "tiny-tuned"]
    assert list(table["pass@1"]) == [0.0, 1.0]
    assert "tiny-code: pass@1 0.000 -> 1.000 (+1.000), McNemar p = 0.125" in texts(at)


def test_refusals_are_shown_not_crashed(open_page, api, trainable_gpt2_dir):
    api.register_model("tiny-base", "transformers", str(trainable_gpt2_dir))
    at = open_page("training")
    assert_no_crash(at)
    assert "No sft training rows match" in texts(at)  # no rated history yet: the count preview says why
    assert next(b for b in at.button if b.label == "Start training").disabled


def test_an_unreachable_api_is_explained(unreachable_url):
    from streamlit.testing.v1 import AppTest

    from tests.ui.ui_helpers import APP

    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page("pages/training.py").run()
    assert_no_crash(at)
    assert any(f"API at {unreachable_url} is not reachable" in box.value for box in at.error)
