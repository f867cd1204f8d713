"""Entry of the Streamlit UI (`promptyard up` starts it with PROMPTYARD_API_URL set)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from promptyard.ui.common import favicon, remember_pages, sidebar

PAGES = Path(__file__).resolve().parent / "pages"

# An image, not ":material/...": Streamlit fetches a material favicon from fonts.gstatic.com, and the UI must not
# reach the network.
st.set_page_config(page_title="promptyard", page_icon=favicon(), layout="wide")

sidebar()
by_stem = {}


def page(stem: str, title: str, icon: str, **options) -> st.Page:
    """The page in pages/STEM.py, remembered by its stem for links between pages."""
    by_stem[stem] = st.Page(PAGES / f"{stem}.py", title=title, icon=icon, **options)
    return by_stem[stem]


sections = {
    "Prompts": [
        page("library", "Library", ":material/library_books:", default=True),
        page("editor", "Editor", ":material/edit_note:"),
        page("workbench", "Workbench", ":material/science:"),
    ],
    "Runs": [
        page("history", "History", ":material/history:"),
        page("experiments", "Experiments", ":material/balance:"),
        page("evaluations", "Evaluations", ":material/fact_check:"),
        page("dashboard", "Dashboard", ":material/monitoring:"),
    ],
    "Setup": [
        page("models", "Models", ":material/memory:"),
        page("training", "Training", ":material/model_training:"),
    ],
}
remember_pages(by_stem)
navigation = st.navigation(sections)
try:
    navigation.run()
except Exception as exc:  # noqa: BLE001 - a page bug must read as a message, never as a traceback
    st.error(f"This page hit an unexpected problem ({exc.__class__.__name__}: {exc}). Reload to try again.")
