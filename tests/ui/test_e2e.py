"""End to end in a real browser: `promptyard up`, then a person's first session, driven with Playwright.

Debian's Chromium (`apt-get install chromium`), never a downloaded browser. Screenshots of every page go
to test-artifacts/e2e/; with PROMPTYARD_SCREENSHOTS_DIR set, small copies for the README go there too.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from promptyard.client import PromptyardClient

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
CRASH_TEXT = re.compile(r"Traceback|unexpected problem|Exception:|StreamlitAPIException|Error:", re.I)
TEMPLATE_V1 = "Complete this Python function:\n{{ code }}"
TEMPLATE_V2 = "Complete this Python function and keep it short:\n{{ code }}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"promptyard up exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {seconds}s")


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_gpt2_dir):
    """`promptyard up` on free ports with a fresh home, and the tiny GPT-2 registered through the API."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver (.ci/run does this)")
    home = tmp_path_factory.mktemp("e2e-home")
    api_port, ui_port = free_port(), free_port()
    env = {**os.environ, "PROMPTYARD_HOME": str(home), "PROMPTYARD_ADMIN_KEY": ""}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    log = open(home / "up.log", "w")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "promptyard"), "up", "--api-port", str(api_port), "--ui-port", str(ui_port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        api_url, ui_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{ui_port}"
        wait_for(f"{api_url}/healthz", process, home / "up.log")
        wait_for(f"{ui_url}/_stcore/health", process, home / "up.log")
        with PromptyardClient(api_url, timeout=120) as api:
            api.register_model("tiny-gpt2", "transformers", str(tiny_gpt2_dir), params={"max_new_tokens": 12})
            yield api, ui_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def openai_model_server():
    """A real HTTP server speaking the OpenAI API (what vLLM or llama.cpp would be), and an address that refuses."""
    from tests.fixtures.openai_server import OpenAIServer, refused_url

    with OpenAIServer() as fake:
        yield {"url": fake.base_url, "refused": refused_url()}


@pytest.fixture(scope="module")
def page(server):
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(30_000)
        page = context.new_page()
        yield page
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "last.png"), full_page=True)  # where a failure left the browser
        (ARTIFACTS / "last.txt").write_text(page.locator("body").inner_text())
        browser.close()


def settle(page) -> None:
    """Wait until Streamlit has finished its script run and no element is stale."""
    page.wait_for_timeout(300)
    page.locator("[data-testid='stStatusWidget']").wait_for(state="hidden", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0", timeout=60_000)
    page.wait_for_timeout(200)


def snap(page, name: str) -> None:
    """Save a screenshot of the page and fail on any visible error text."""
    settle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    readme_dir = os.environ.get("PROMPTYARD_SCREENSHOTS_DIR")
    if readme_dir:
        Path(readme_dir).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(readme_dir) / f"{name}.png"))
    main = page.locator("[data-testid='stMain']").inner_text()
    assert not CRASH_TEXT.search(main), f"{name} shows error text:\n{main[:2000]}"
    assert page.locator("[data-testid='stException']").count() == 0


def go(page, title: str) -> None:
    page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
    settle(page)


def choose(page, option: str) -> None:
    """Click the radio choice `option`."""
    page.locator("[data-testid='stRadio']").get_by_text(option, exact=True).first.click()
    settle(page)


def pick(page, label: str, option: str) -> None:
    """Choose `option` in the Streamlit selectbox labelled `label`. A list opened while the page is still rerunning
    (right after a form added the option) shows the old options: close it and open it again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("[data-testid='stSelectbox']").filter(has_text=label).first
    choice = page.get_by_role("option", name=option).first
    for _ in range(3):
        box.click()
        try:
            choice.wait_for(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            settle(page)
    choice.click()
    settle(page)


def test_first_session(server, page, openai_model_server):
    api, ui_url = server
    outside = []  # the UI must never reach the network: every request stays on this machine
    page.on("request", lambda request: outside.append(request.url)
            if re.match(r"(https?|wss?)://(?!127\.0\.0\.1|localhost)", request.url) else None)
    # The very first page opened on a fresh server is a direct link: it shows the app's navigation, not
    # Streamlit's list of the files in pages/.
    page.goto(f"{ui_url}/history")
    # The first page a fresh server renders imports the app and its libraries: give it time on a busy machine.
    page.get_by_role("heading", name="Execution history").wait_for(timeout=90_000)
    settle(page)
    nav = page.locator("[data-testid='stSidebarNav']").inner_text()
    assert "Library" in nav and "Dashboard" in nav and "workbench" not in nav, nav

    page.goto(ui_url)
    page.get_by_role("heading", name="Prompt library").wait_for()
    page.get_by_role("heading", name="New prompt").wait_for()
    snap(page, "library")

    page.get_by_role("textbox", name="Name", exact=True).fill("complete-fn")
    page.get_by_role("textbox", name="Description", exact=True).fill("Complete a Python function")
    page.get_by_role("textbox", name="Template", exact=True).fill(TEMPLATE_V1)
    page.get_by_role("button", name="Create prompt").click()
    page.get_by_text("Created prompt 'complete-fn'").wait_for()
    assert api.get_prompt("complete-fn")["latest_version"]["version"] == 1

    pick(page, "Prompt", "complete-fn")
    page.get_by_role("button", name="Open in editor").click()  # a link between pages, from the real entry
    settle(page)
    page.get_by_role("heading", name="Prompt editor").wait_for()
    page.get_by_role("textbox", name="Template", exact=True).fill(TEMPLATE_V2)
    # The version names its own model: the Workbench picks it without being told.
    page.get_by_role("textbox", name="Default params (JSON object)").fill('{"model": "tiny-gpt2", "max_new_tokens": 12}')
    page.get_by_role("textbox", name="Message", exact=True).fill("ask for brevity")
    page.get_by_role("button", name="Save as new version").click()
    page.get_by_text("Saved version 2").wait_for()
    snap(page, "editor")

    choose(page, "Diff")
    page.locator("table.py-diff").wait_for()
    assert "keep it short" in page.locator("table.py-diff").inner_text()
    snap(page, "diff")
    choose(page, "Unified")
    page.locator("code").filter(has_text="@@").first.wait_for()
    assert "+Complete this Python function and keep it short:" in page.locator("code").filter(has_text="@@").first.inner_text()

    choose(page, "Labels")
    page.get_by_role("button", name="Move label").click()
    page.get_by_text("'production' now points at v2").wait_for()
    assert api.get_prompt("complete-fn")["labels"] == {"production": 2}

    # Register an OpenAI-compatible model from the UI: refused until it names the served model, then stored with a
    # wrong address (the page says why it is in error), then fixed in place.
    go(page, "Models")
    page.get_by_role("heading", name="Register a model").wait_for()
    register = page.locator("[data-testid='stForm']").filter(has=page.get_by_role("button", name="Register"))
    register.get_by_role("textbox", name="Name", exact=True).fill("remote-coder")
    pick(page, "Plugin", "openai-compatible")
    register.get_by_role("textbox", name="Source", exact=True).fill(openai_model_server["refused"])
    register.get_by_role("button", name="Register").click()
    page.get_by_text("needs the name the server serves it under").wait_for()
    assert "remote-coder" not in [m["name"] for m in api.list_models()["items"]]
    register.get_by_role("textbox", name="Options (JSON)").fill('{"model": "tiny"}')
    register.get_by_role("button", name="Register").click()
    page.get_by_text("Registered remote-coder (error)").wait_for()
    page.get_by_text(re.compile(r"remote-coder: The model server at .* could not be reached")).wait_for()
    pick(page, "Model", "remote-coder (error)")
    page.get_by_text("Fix or remove remote-coder").click()
    fix = page.locator("[data-testid='stExpander']").filter(has_text="Fix or remove remote-coder")
    fix.get_by_role("textbox", name="Source", exact=True).fill(openai_model_server["url"])
    fix.get_by_role("button", name="Save changes").click()
    page.get_by_text("Saved remote-coder (source): available.").wait_for()
    assert api.get_model("remote-coder")["status"] == "available"
    snap(page, "models")

    # The first Run works without touching the model picker (presets without weights are never the default).
    go(page, "Workbench")
    page.get_by_role("heading", name="Workbench").wait_for()
    pick(page, "Version", "label production (v2)")
    page.get_by_role("textbox", name="code", exact=True).fill("def add(a, b):")
    page.keyboard.press("Tab")
    settle(page)
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_text(re.compile(r"Execution \d+ · complete-fn v2 · tiny-gpt2")).wait_for(timeout=120_000)
    records = api.list_executions(prompt="complete-fn")["items"]
    assert len(records) == 1 and records[0]["status"] == "succeeded" and records[0]["stream"] is True
    assert records[0]["output"].strip() and records[0]["model"] == "tiny-gpt2"
    page.get_by_text("Tokens in / out").scroll_into_view_if_needed()
    snap(page, "workbench")

    go(page, "History")
    page.get_by_role("heading", name="Execution history").wait_for()
    page.get_by_text("1 execution(s), newest first").wait_for()
    page.locator("code").filter(has_text="keep it short").first.wait_for()
    choose(page, "★★★★")
    page.get_by_role("textbox", name="Comment (optional)").fill("short and right")
    page.get_by_role("button", name="Submit rating").click()
    page.get_by_text(f"execution {records[0]['id']} rated 4/5").wait_for()
    assert [(f["rating"], f["comment"]) for f in api.get_execution(records[0]["id"])["feedback"]] == [
        (4, "short and right")]
    snap(page, "history")

    go(page, "Experiments")
    choose(page, "New experiment")
    pick(page, "Prompt", "complete-fn")
    page.get_by_role("textbox", name="Experiment name").fill("complete-fn-ab")
    page.get_by_role("button", name="Create experiment").click()
    page.get_by_text("Experiment 'complete-fn-ab' created").wait_for()

    # Runs sent into the experiment from the Workbench: a subject keeps its arm.
    go(page, "Workbench")
    choose(page, "Experiment")
    page.get_by_role("textbox", name="Subject").fill("user-1")
    page.get_by_role("textbox", name="code", exact=True).fill("def sub(a, b):")
    page.keyboard.press("Tab")
    settle(page)
    for _ in range(2):
        page.get_by_role("button", name="Run", exact=True).click()
        settle(page)
        page.get_by_text(re.compile(r"Execution \d+ · complete-fn v\d · remote-coder")).wait_for(timeout=60_000)
    sent = [e for e in api.list_executions(prompt="complete-fn")["items"] if e.get("experiment") == "complete-fn-ab"]
    assert len(sent) == 2 and len({e["version"] for e in sent}) == 1
    assert all(e["status"] == "succeeded" and e["model"] == "remote-coder" for e in sent)

    go(page, "Experiments")
    page.get_by_text("Refreshes every 10 seconds.").wait_for()
    snap(page, "experiments")

    go(page, "Evaluations")
    page.get_by_role("heading", name="Evaluations", exact=True).wait_for()
    snap(page, "evaluations")

    go(page, "Dashboard")
    page.get_by_role("heading", name="Dashboard", exact=True).wait_for()
    choose(page, "by version")
    page.locator(".vega-embed").first.wait_for()
    page.wait_for_timeout(1000)  # let the charts draw before the screenshot
    # Each bar is one prompt's version, named by both: never "null, 1.0, 2.0" stacked across prompts.
    axis = page.locator(".vega-embed").first.locator("svg text").all_text_contents()
    assert "complete-fn v2" in axis and "null" not in axis and "2.0" not in axis, axis
    snap(page, "dashboard")

    # With auth on, the API key entered once is kept across reloads for the browser session.
    key = api.create_key("admin", name="e2e")["key"]
    page.goto(ui_url)
    page.get_by_text("needs an API key").wait_for()
    page.get_by_role("textbox", name="API key").fill(key)
    page.keyboard.press("Enter")
    settle(page)
    page.get_by_role("heading", name="New prompt").wait_for()
    page.reload()
    page.get_by_role("heading", name="Prompt library").wait_for()
    settle(page)
    assert page.get_by_text("needs an API key").count() == 0
    assert page.get_by_role("textbox", name="API key").input_value() == key
    assert not outside, f"the UI reached outside this machine: {outside[:5]}"
