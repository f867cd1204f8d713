"""The single-port unit started by deploy/entrypoint.sh (the image's entry point): nginx in front of gunicorn
(2 workers) and Streamlit on one port, with auth on as in the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import pytest

from tests.deploy.unitproc import ENTRYPOINT, clean_env, free_port, stop, wait_until_up
from tests.monitoring.promtext import samples, value

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")]

ADMIN_KEY = "single-port-admin-secret"
AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}


class GatedUpstream(ThreadingHTTPServer):
    """A model server (the boundary) whose stream sends its first chunk, then waits for `gate` to send the rest."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), GatedHandler)
        self.gate = threading.Event()


class GatedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "gated", "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

        def chunk(text, finish=None):
            event = {"id": "cmpl-1", "object": "text_completion", "model": "gated",
                     "choices": [{"index": 0, "text": text, "finish_reason": finish}]}
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
            self.wfile.flush()

        chunk("first")
        self.server.gate.wait(120)
        chunk(" second", "stop")
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@pytest.fixture(scope="module")
def unit(tmp_path_factory, tiny_gpt2_dir):
    """The unit from the entrypoint script with storage 'mounted' at a data folder; yields its base URL."""
    root = tmp_path_factory.mktemp("single-port")
    data = root / "data"
    data.mkdir()
    port = free_port()
    log_path = root / "unit.log"
    log = open(log_path, "w")
    # The data folder stands for a mounted storage bucket (a tmp folder is no mount point: say it is persistent).
    env = clean_env(PORT=str(port), PROMPTYARD_HOST="0.0.0.0", PROMPTYARD_DATA_DIR=str(data),
                    PROMPTYARD_DATA_PERSISTENT="yes",
                    PROMPTYARD_ADMIN_KEY=ADMIN_KEY, PROMPTYARD_WORKERS="2", PROMPTYARD_THREADS="4",
                    HOME=str(root), PROMPTYARD_LOG_FORMAT="json")
    process = subprocess.Popen(["bash", str(ENTRYPOINT)], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    upstream = GatedUpstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", process, log_path)
        wait_until_up(f"{base}/_stcore/health", process, log_path)
        for body in ({"name": "tiny-gpt2", "plugin": "transformers", "source": str(tiny_gpt2_dir),
                      "params": {"max_new_tokens": 8}},
                     {"name": "gated", "plugin": "openai-compatible",
                      "source": f"http://127.0.0.1:{upstream.server_address[1]}", "options": {"model": "gated"}}):
            response = httpx.post(f"{base}/api/v1/models", json=body, headers=AUTH, timeout=60)
            assert response.status_code == 201, response.text
        yield {"base": base, "process": process, "log": log_path, "data": data, "upstream": upstream}
    finally:
        upstream.gate.set()
        upstream.shutdown()
        code = stop(process)
        log.close()
        assert code == 0, f"the unit did not stop cleanly ({code}):\n{log_path.read_text()[-3000:]}"


def test_health_and_the_api_behind_the_proxy_with_auth_on(unit):
    base = unit["base"]
    health = httpx.get(f"{base}/healthz")
    assert health.json() == {"status": "ok"} and health.headers["X-Request-ID"]
    # The image listens publicly: auth is on, and the admin key from the environment works.
    refused = httpx.get(f"{base}/api/v1/models")
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "missing_api_key"
    models = httpx.get(f"{base}/api/v1/models", headers=AUTH)
    assert models.status_code == 200 and {"tiny-gpt2", "gated"} <= {m["name"] for m in models.json()["items"]}
    # The data went where the storage is mounted.
    assert (unit["data"] / "promptyard" / "promptyard.db").exists()
    # A caller's request id crosses the proxy and comes back, and the worker logged the request as one JSON line.
    assert httpx.get(f"{base}/healthz", headers={"X-Request-ID": "proxy-check-1"}).headers["X-Request-ID"] == \
        "proxy-check-1"
    # Without one, nginx's own id names the request (and comes back).
    assert len(httpx.get(f"{base}/healthz").headers["X-Request-ID"]) == 32

    def logged():
        for line in unit["log"].read_text().splitlines():
            if line.startswith("{") and '"proxy-check-1"' in line:
                return json.loads(line)
        return None

    for _ in range(50):
        entry = logged()
        if entry:
            break
        time.sleep(0.1)
    assert entry and entry["logger"] == "promptyard.requests" and entry["status"] == 200
    assert entry["route"] == "/healthz" and entry["remote_addr"] == "127.0.0.1"


def test_nginx_answers_an_oversized_body_in_the_apis_error_shape(unit):
    too_big = b"x" * (2 * 1024 * 1024 + 1)
    response = httpx.post(f"{unit['base']}/api/v1/prompts", content=too_big, headers={
        **AUTH, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_v1_with_the_real_openai_client(unit):
    client = openai.OpenAI(base_url=f"{unit['base']}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=120)
    assert "tiny-gpt2" in [m.id for m in client.models.list()]
    response = client.chat.completions.create(model="tiny-gpt2", messages=[{"role": "user", "content": "def add"}])
    assert response.choices[0].message.content is not None and response.usage.completion_tokens > 0
    chunks = list(client.completions.create(model="tiny-gpt2", prompt="def add(a, b):", stream=True))
    assert chunks and "".join(c.choices[0].text for c in chunks if c.choices) is not None


def test_a_stream_passes_through_the_proxy_unbuffered(unit):
    """The first chunk reaches the client while the model server is still holding back the rest."""
    upstream = unit["upstream"]
    upstream.gate.clear()
    releaser = threading.Timer(90, upstream.gate.set)  # a safety net should the first chunk never come
    releaser.start()
    try:
        client = openai.OpenAI(base_url=f"{unit['base']}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=120)
        stream = client.completions.create(model="gated", prompt="x", stream=True)
        texts = []
        for chunk in stream:
            if chunk.choices and chunk.choices[0].text:
                texts.append(chunk.choices[0].text)
                break
        assert texts == ["first"]
        assert not upstream.gate.is_set(), "the first chunk only arrived once the whole answer was written"
        upstream.gate.set()
        rest = "".join(c.choices[0].text for c in stream if c.choices)
        assert rest == " second"
    finally:
        releaser.cancel()
        upstream.gate.set()


def test_metrics_add_up_across_the_gunicorn_workers(unit):
    base = unit["base"]
    before = samples(httpx.get(f"{base}/metrics", headers=AUTH).text)
    for _ in range(12):
        assert httpx.get(f"{base}/healthz").status_code == 200
    after = samples(httpx.get(f"{base}/metrics", headers=AUTH).text)
    series = dict(method="GET", route="/healthz", status="200")
    assert value(after, "promptyard_http_requests_total", **series) - \
        value(before, "promptyard_http_requests_total", **series) == 12
    assert httpx.get(f"{base}/metrics").status_code == 401


def test_every_ui_page_through_the_proxy(unit):
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    from playwright.sync_api import sync_playwright

    from tests.ui.test_e2e import CHROMIUM, CRASH_TEXT, settle

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does this)")
    sockets: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            page.set_default_timeout(60_000)
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(unit["base"] + "/")
            page.get_by_role("heading", name="Prompt library").wait_for()
            key_box = page.get_by_label("API key", exact=True).and_(page.locator("input"))
            key_box.fill(ADMIN_KEY)
            key_box.press("Enter")
            settle(page)
            for title, heading in [("Library", "Prompt library"), ("Editor", "Prompt editor"),
                                   ("Workbench", "Workbench"), ("History", "Execution history"),
                                   ("Experiments", None), ("Evaluations", None), ("Dashboard", None),
                                   ("Models", None)]:
                page.locator("[data-testid='stSidebarNav']").get_by_text(title, exact=True).click()
                settle(page)
                if heading:
                    page.get_by_role("heading", name=heading).wait_for()
                main = page.locator("[data-testid='stMain']").inner_text()
                assert not CRASH_TEXT.search(main), f"{title} shows error text:\n{main[:1500]}"
                assert "needs an API key" not in main, f"{title} did not get the key"
                assert page.locator("[data-testid='stException']").count() == 0
            # The Models page lists what the API has, read through the key (in a data grid's cells).
            page.get_by_text("tiny-gpt2").first.wait_for(state="attached")
        finally:
            browser.close()
    port = unit["base"].rsplit(":", 1)[1]
    assert any(url.startswith(f"ws://127.0.0.1:{port}/_stcore/stream") for url in sockets), sockets
