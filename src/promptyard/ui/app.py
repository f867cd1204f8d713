"""Entry of the Streamlit UI (`promptyard up` starts it with PROMPTYARD_API_URL set)."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from promptyard.ui.common import favicon, sidebar

PAGES = Path(__file__).resolve().parent / "pages"

# An image, not ":material/...": Streamlit fetches a material favicon from fonts.gstatic.com, and the UI must not
# reach the network.
st.set_page_config(page_title="promptyard", page_icon=favicon(), layout="wide")

sidebar()
navigation = st.navigation(
    {
        "Prompts": [
            st.Page(PAGES / "library.py", title="Library", icon=":material/library_books:", default=True),
            st.Page(PAGES / "editor.py", title="Editor", icon=":material/edit_note:"),
            st.Page(PAGES / "workbench.py", title="Workbench", icon=":material/science:"),
        ],
        "Runs": [
            st.Page(PAGES / "history.py", title="History", icon=":material/history:"),
            st.Page(PAGES / "experiments.py", title="Experiments", icon=":material/balance:"),
            st.Page(PAGES / "evaluations.py", title="Evaluations", icon=":material/fact_check:"),
            st.Page(PAGES / "dashboard.py", title="Dashboard", icon=":material/monitoring:"),
        ],
        "Setup": [st.Page(PAGES / "models.py", title="Models", icon=":material/memory:")],
    }
)
try:
    navigation.run()
except Exception as exc:  # noqa: BLE001 - a page bug must read as a message, never as a traceback
    st.error(f"This page hit an unexpected problem ({exc.__class__.__name__}: {exc}). Reload to try again.")
