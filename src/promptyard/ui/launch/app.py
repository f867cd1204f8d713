"""What `promptyard up` serves: the UI's app.py, run from a folder with no `pages/` beside it.

Streamlit treats a `pages/` folder next to its entry script as an old-style multipage app and, on a direct link
(`/models`, `/history`) opened before any session has run the app's own `st.navigation`, shows that folder's raw
file list as the navigation. The app is the same; only the entry's folder differs.
"""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parent.parent / "app.py"), run_name="__main__")
