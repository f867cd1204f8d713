"""Turn a model's raw output into the code to run: completion mode (stop sequences) and chat mode (code blocks)."""

from __future__ import annotations

import ast
import re

STOP_SEQUENCES = ("\ndef ", "\nclass ", "\nif ", "\nprint(", "\n#", '\nif __name__', "\nassert ")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([\w+.-]*)[^\n]*$", re.M)
_PY_LANGS = {"", "python", "py", "python3", "py3"}


def truncate_completion(text: str, stops: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """Completion mode: cut the continuation at the first top-level stop sequence (the prompt is prepended later)."""
    cut = len(text)
    for stop in stops:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) for each fenced block; an unterminated last fence runs to the end of the text."""
    blocks = []
    position = 0
    while True:
        opening = _FENCE.search(text, position)
        if not opening:
            return blocks
        fence, lang = opening.group(1), opening.group(2).lower()
        start = opening.end() + 1
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$", re.M).search(text, start)
        end = closing.start() if closing else len(text)
        blocks.append((lang, text[start:end]))
        if not closing:
            return blocks
        position = closing.end()


def parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    return re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.M) is not None


def _imports(code: str) -> list[str]:
    return [line for line in code.splitlines() if re.match(r"^(import|from)\s+\w", line)]


def _longest_python(text: str) -> str:
    """No usable fence: the longest run of consecutive lines that parses as Python."""
    lines = text.splitlines()
    best = ""
    for start in range(len(lines)):
        # Only start on a line that looks like code, to keep this quadratic search short.
        if not re.match(r"^(\s*)(def |class |import |from |@|async def )", lines[start]):
            continue
        for end in range(len(lines), start, -1):
            candidate = "\n".join(lines[start:end])
            if len(candidate) <= len(best):
                break
            if parses(candidate):
                best = candidate
                break
    return best


def _drop_echoed_prompt(code: str, prompt: str | None) -> str:
    """A model that repeats the prompt verbatim before its body: keep the body (the prompt is prepended later)."""
    head = (prompt or "").strip()
    stripped = code.lstrip()
    if head and stripped.startswith(head) and stripped[len(head):].strip():
        return stripped[len(head):]
    return code


def extract_chat(text: str, entry_point: str | None = None, prompt: str | None = None) -> str:
    """Chat mode: pick the code block that defines the entry point (else the best Python block), keep imports."""
    blocks = [code for lang, code in code_blocks(text) if lang in _PY_LANGS]
    if not blocks:
        code = text if parses(text) and _looks_like_code(text) else _longest_python(text)
    else:
        defining = [b for b in blocks if entry_point and _defines(b, entry_point)]
        pool = defining or [b for b in blocks if parses(b)] or blocks
        # The last block defining the function is usually the corrected, final answer.
        code = pool[-1] if defining else max(pool, key=len)
        # Imports written in another block are still needed by the chosen one.
        missing = [line for b in blocks if b is not code for line in _imports(b) if line not in code]
        if missing:
            code = "\n".join(dict.fromkeys(missing)) + "\n" + code
    return _drop_echoed_prompt(code, prompt).strip("\n") + "\n"


def extract_prefilled(text: str, entry_point: str | None = None, prompt: str | None = None,
                      opened: str = "```python\n") -> str:
    """Chat mode when the answer was begun for the model with an open fence: its text continues inside the fence.
    A backend that ignored the begun answer (some servers do) answered afresh, with fences of its own."""
    continued = extract_chat(opened + text, entry_point, prompt)
    if parses(continued) and (entry_point is None or _defines(continued, entry_point)):
        return continued
    fresh = extract_chat(text, entry_point, prompt)
    return fresh if code_blocks(text) else continued


# Top-level statements kept from a chat answer, as EvalPlus's sanitizer keeps them: imports, definitions and
# assignments; a model's own example calls, prints and asserts are dropped (a wrong assert would fail a right answer).
_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                ast.AnnAssign)


def keep_definitions(code: str) -> str:
    """The code's imports, definitions and assignments, in order; code that does not parse is left as it is."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return code
    if all(isinstance(node, _DEFINITIONS) for node in tree.body):
        return code
    lines = code.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, _DEFINITIONS):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
            kept.append("".join(lines[start:node.end_lineno]).rstrip("\n") + "\n")
    return "\n".join(kept)


def _looks_like_code(text: str) -> bool:
    return bool(re.search(r"^\s*(def |class |import |from |return |for |while |if )", text, re.M))


def extract(text: str, mode: str, *, entry_point: str | None = None, prompt: str | None = None) -> str:
    """The completion to score: `completion` keeps the continuation up to a stop; `chat` pulls out code."""
    if mode == "completion":
        return truncate_completion(text)
    if mode == "chat":
        return extract_chat(text, entry_point, prompt)
    raise ValueError(f"unknown extraction mode {mode!r} (use completion or chat)")
