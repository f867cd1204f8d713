"""Side-by-side diff of two texts as an HTML table (the unified diff comes from the API)."""

from __future__ import annotations

import difflib
import html

STYLE = """
<style>
.py-diff {width:100%; border-collapse:collapse; font-family:monospace; font-size:0.85rem;}
.py-diff th {text-align:left; padding:4px 8px; border-bottom:1px solid #ccc;}
.py-diff td {vertical-align:top; padding:1px 8px; white-space:pre-wrap; width:50%;}
.py-diff .del {background:#ffe6e6;} .py-diff .add {background:#e6ffe6;}
.py-diff .num {color:#999; width:2.5em; text-align:right; user-select:none;}
</style>
"""


def side_by_side(old: str, new: str, old_title: str, new_title: str) -> str:
    """An HTML table with the old text on the left and the new on the right, changes highlighted."""
    old_lines, new_lines = old.splitlines(), new.splitlines()
    rows = []
    matcher = difflib.SequenceMatcher(a=old_lines, b=new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        left_css = "del" if tag in ("delete", "replace") else ""
        right_css = "add" if tag in ("insert", "replace") else ""
        for offset in range(max(i2 - i1, j2 - j1)):
            i, j = i1 + offset, j1 + offset
            left = old_lines[i] if i < i2 else ""
            right = new_lines[j] if j < j2 else ""
            rows.append(
                f"<tr><td class='num'>{i + 1 if i < i2 else ''}</td><td class='{left_css}'>{html.escape(left)}</td>"
                f"<td class='num'>{j + 1 if j < j2 else ''}</td><td class='{right_css}'>{html.escape(right)}</td></tr>"
            )
    head = f"<tr><th></th><th>{html.escape(old_title)}</th><th></th><th>{html.escape(new_title)}</th></tr>"
    return f"{STYLE}<table class='py-diff'>{head}{''.join(rows)}</table>"
