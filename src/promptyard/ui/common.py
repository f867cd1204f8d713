"""What every page shares: the API client of this browser session, and readable error handling."""

from __future__ import annotations

import json
import os
from typing import Any, Callable, TypeVar

import streamlit as st

from promptyard.client import PromptyardAPIError, PromptyardClient, PromptyardConnectionError

T = TypeVar("T")

DEFAULT_API_URL = "http://127.0.0.1:5000"
KEY_STATE = "api_key"
# The key is also kept in a session cookie (no expiry: gone when the browser closes), so that reloading a page,
# which starts a new Streamlit session, keeps it.
KEY_COOKIE = "promptyard_api_key"


def api_url() -> str:
    """The API this UI talks to: `PROMPTYARD_API_URL` (set by `promptyard up`) or the local default."""
    return os.environ.get("PROMPTYARD_API_URL", DEFAULT_API_URL).rstrip("/")


def client(timeout: float = 30.0) -> PromptyardClient:
    """A client for this browser session, carrying the key entered in the sidebar."""
    return PromptyardClient(api_url(), api_key=st.session_state.get(KEY_STATE) or None, timeout=timeout)


def show_connection_error(exc: PromptyardConnectionError) -> None:
    st.error(
        f"The promptyard API at {exc.base_url} is not reachable. Start it with `promptyard up` "
        f"(or set `PROMPTYARD_API_URL`), then reload this page."
    )


def show_api_error(exc: PromptyardAPIError) -> None:
    if exc.status == 401 and exc.code == "invalid_api_key":
        st.warning("The API key in the sidebar is invalid or has been revoked: enter another one.")
    elif exc.status == 401:
        st.warning("This promptyard API needs an API key: enter it in the sidebar (ask an admin for one).")
    elif exc.status == 403:
        st.warning(f"Your API key may not do this. {exc.message}")
    elif exc.status == 404 and exc.code in ("not_found", "http_error"):
        st.info("This server does not offer this feature (its API has no such endpoint).")
    else:
        st.error(exc.message)


def load(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Read something the page needs; on failure show why and stop the page there."""
    try:
        return fn(*args, **kwargs)
    except PromptyardConnectionError as exc:
        show_connection_error(exc)
    except PromptyardAPIError as exc:
        show_api_error(exc)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def act(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
    """Perform an action a person asked for; on failure show why and return None (the page goes on)."""
    try:
        return fn(*args, **kwargs)
    except PromptyardConnectionError as exc:
        show_connection_error(exc)
    except PromptyardAPIError as exc:
        show_api_error(exc)
    return None


def try_load(fn: Callable[..., T], *args: Any, default: T, **kwargs: Any) -> T:
    """Read something optional: `default` when the API does not offer it (404), else like `load`."""
    try:
        return fn(*args, **kwargs)
    except PromptyardAPIError as exc:
        if exc.status in (404, 405):
            return default
        show_api_error(exc)
    except PromptyardConnectionError as exc:
        show_connection_error(exc)
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def flash(message: str) -> None:
    """Show `message` once, on the next run (survives the rerun after an action)."""
    st.session_state["_flash"] = message


def show_flash() -> None:
    message = st.session_state.pop("_flash", None)
    if message:
        st.success(message)


def parse_json(text: str, what: str) -> dict | None:
    """Parse a JSON object typed by a person; show a readable error and return None when it is not one."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        st.error(f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).")
        return None
    if not isinstance(value, dict):
        st.error(f"{what} must be a JSON object, like {{\"temperature\": 0.2}}.")
        return None
    return value


def items(page: dict | None) -> list[dict]:
    """The `items` of a list answer (an empty list for anything else)."""
    return list((page or {}).get("items") or [])


def model_names(api: PromptyardClient) -> list[str]:
    """Names of the registered models, for pickers."""
    return [m["name"] for m in items(load(api.list_models))]


def prompt_names(api: PromptyardClient) -> list[str]:
    """Names of the prompts in the library, for pickers."""
    return [p["name"] for p in items(load(api.list_prompts, limit=500))]


def fmt(value: Any, unit: str = "", digits: int = 2) -> str:
    """A number for display, or a dash when there is none."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def sidebar() -> None:
    """API address, health and the API key (entered once per browser session)."""
    if KEY_STATE not in st.session_state:  # a new session (a reload): the browser session's key, if any
        st.session_state[KEY_STATE] = _cookie_key()
    with st.sidebar:
        if os.environ.get("PROMPTYARD_STORAGE_EPHEMERAL"):
            # Set by the container's entrypoint when nothing is mounted at /data.
            st.warning("Storage is ephemeral: prompts, runs and keys are lost when this server restarts. "
                       "Mount persistent storage at /data to keep them.", icon=":material/warning:")
        st.caption(f"API: {api_url()}")
        st.text_input("API key", value=st.session_state.get(KEY_STATE, ""), type="password", key="_api_key_input",
                      on_change=_remember_key,
                      help="Only needed when the API has auth on (a non-loopback bind or keys created). "
                           "Kept until the browser closes.")
        if "_key_to_store" in st.session_state:
            _store_key_cookie(st.session_state.pop("_key_to_store"))


def _cookie_key() -> str:
    try:
        return (st.context.cookies or {}).get(KEY_COOKIE, "") or ""
    except Exception:  # noqa: BLE001 - no request context (bare script runs): no stored key
        return ""


def _remember_key() -> None:
    """Keep the key under a plain session key (page switches) and in the session cookie (reloads)."""
    st.session_state[KEY_STATE] = st.session_state.get("_api_key_input", "").strip()
    st.session_state["_key_to_store"] = st.session_state[KEY_STATE]


def _store_key_cookie(key: str) -> None:
    """Set (or clear) the session cookie from the browser: only the page's own script can write it."""
    import streamlit.components.v1 as components

    value = json.dumps(key)
    expiry = "" if key else "; max-age=0"
    components.html(
        f"<script>window.parent.document.cookie = '{KEY_COOKIE}=' + encodeURIComponent({value}) + "
        f"'; path=/; SameSite=Strict{expiry}';</script>",
        height=0,
    )


def favicon():
    """The tab icon, drawn here (a material icon would be fetched from Google's servers)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    draw.rounded_rectangle((1, 1, 30, 30), radius=7, fill=(46, 125, 50, 255))
    draw.rectangle((9, 7, 13, 25), fill="white")  # a "p": stem and bowl
    draw.ellipse((9, 7, 23, 19), outline="white", width=4)
    return image


def section(options: list[str], key: str) -> str:
    """A row of choices that stays put across reruns (st.tabs would jump back to the first one)."""
    pending = st.session_state.pop(f"{key}::goto", None)
    if pending in options:
        st.session_state[key] = pending
    return st.radio("Section", options, horizontal=True, key=key, label_visibility="collapsed")


def goto_section(key: str, option: str) -> None:
    """Open `option` of the section row `key` on the next run."""
    st.session_state[f"{key}::goto"] = option


def remember_pages(pages: dict) -> None:
    """The app's pages by file stem, for `open_page` (a path would resolve against the entry script's folder,
    which differs between `promptyard up` and the tests)."""
    st.session_state["_pages"] = pages


def open_page(stem: str) -> None:
    """Switch to the page whose file is `stem`.py."""
    st.switch_page(st.session_state["_pages"][stem])
