"""The Python client of the promptyard REST API (httpx): one method per endpoint, typed errors."""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx

__all__ = [
    "ExecutionStream",
    "PromptyardAPIError",
    "PromptyardClient",
    "PromptyardClientError",
    "PromptyardConnectionError",
]


class PromptyardClientError(Exception):
    """Base class of every error the client raises."""


class PromptyardConnectionError(PromptyardClientError):
    """The API could not be reached (server down, wrong URL, network failure or timeout)."""

    def __init__(self, base_url: str, reason: str):
        self.base_url = base_url
        self.reason = reason
        super().__init__(f"The promptyard API at {base_url} is not reachable ({reason}).")


class PromptyardAPIError(PromptyardClientError):
    """The API answered with an error: `status` (HTTP), `code` (snake_case), `message`, `details`."""

    def __init__(self, status: int, code: str, message: str, details: dict | None = None, retry_after: float | None = None):
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.retry_after = retry_after
        super().__init__(f"{status} {code}: {message}")


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _error_from(response: httpx.Response) -> PromptyardAPIError:
    """Build the typed error from a non-2xx response, whatever its body."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    retry_after = response.headers.get("Retry-After")
    return PromptyardAPIError(
        status=response.status_code,
        code=str(error.get("code") or "http_error"),
        message=str(error.get("message") or response.reason_phrase or "The API returned an error."),
        details=error.get("details") if isinstance(error.get("details"), dict) else {},
        retry_after=float(retry_after) if retry_after and retry_after.replace(".", "", 1).isdigit() else None,
    )


class ExecutionStream:
    """Iterate to get the output's text deltas as they arrive; `execution` holds the final record afterwards."""

    def __init__(self, client: httpx.Client, request: httpx.Request, base_url: str):
        self._client = client
        self._request = request
        self._base_url = base_url
        self._response: httpx.Response | None = None
        self.execution: dict | None = None

    def __enter__(self) -> "ExecutionStream":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; the server records a stream closed early as cancelled."""
        if self._response is not None:
            self._response.close()

    def __iter__(self) -> Iterator[str]:
        try:
            self._response = self._client.send(self._request, stream=True)
        except httpx.TransportError as exc:
            raise PromptyardConnectionError(self._base_url, exc.__class__.__name__) from exc
        try:
            if self._response.status_code >= 400:
                self._response.read()
                raise _error_from(self._response)
            for event in self._events():
                if "delta" in event:
                    yield str(event["delta"])
                elif "error" in event:
                    # The HTTP status was already 200: a failure mid-stream arrives as an event with the record.
                    self.execution = event.get("execution")
                    error = event["error"] or {}
                    raise PromptyardAPIError(
                        int(error.get("status", 503)), error.get("code", "generation_failed"),
                        error.get("message", "The generation failed."), error.get("details"),
                    )
                else:
                    self.execution = event.get("execution", event)
        except httpx.TransportError as exc:
            raise PromptyardConnectionError(self._base_url, exc.__class__.__name__) from exc
        finally:
            self.close()

    def _events(self) -> Iterator[dict]:
        """Parse `data: {...}` server-sent events (blank-line separated, multi-line data joined)."""
        data: list[str] = []
        for line in self._response.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif not line.strip() and data:
                yield from self._parse(data)
                data = []
        if data:
            yield from self._parse(data)

    @staticmethod
    def _parse(data: list[str]) -> Iterator[dict]:
        payload = "\n".join(data)
        if payload and payload != "[DONE]":
            yield json.loads(payload)


class PromptyardClient:
    """A client of one promptyard API: `PromptyardClient("http://127.0.0.1:5000", api_key=...)`."""

    def __init__(self, base_url: str = "http://127.0.0.1:5000", api_key: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> "PromptyardClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    def _send(self, method: str, path: str, *, params: dict | None = None, json_body: Any = None,
              content: str | bytes | None = None, headers: dict | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, params=_drop_none(params or {}), json=json_body,
                                          content=content, headers=headers)
        except httpx.TransportError as exc:
            raise PromptyardConnectionError(self.base_url, exc.__class__.__name__) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        return response.json() if response.content else None

    # Service

    def health(self) -> dict:
        """GET /healthz: `{"status": "ok"}` when the API is up."""
        return self._json("GET", "/healthz")

    # Prompts

    def list_prompts(self, q: str | None = None, tag: str | None = None, limit: int = 50, offset: int = 0) -> dict:
        """List prompts (`{"items", "total"}`), searching name/description/template with `q`, filtering by `tag`."""
        return self._json("GET", "/api/v1/prompts", params={"q": q, "tag": tag, "limit": limit, "offset": offset})

    def create_prompt(self, name: str, template: str, *, description: str | None = None, tags: list[str] | None = None,
                      variables: list[dict] | None = None, params: dict | None = None, message: str | None = None) -> dict:
        """Create a prompt with its first version; returns the prompt with `latest_version`."""
        body = _drop_none({"name": name, "template": template, "description": description, "tags": tags,
                           "variables": variables, "params": params, "message": message})
        return self._json("POST", "/api/v1/prompts", json_body=body)

    def get_prompt(self, name: str) -> dict:
        """A prompt with its `latest_version` and `labels` (`{"production": 3}`)."""
        return self._json("GET", f"/api/v1/prompts/{name}")

    def update_prompt(self, name: str, *, description: str | None = None, tags: list[str] | None = None) -> dict:
        """Change a prompt's description and/or tags."""
        return self._json("PATCH", f"/api/v1/prompts/{name}", json_body=_drop_none({"description": description, "tags": tags}))

    def delete_prompt(self, name: str) -> None:
        """Archive a prompt (its history stays)."""
        self._send("DELETE", f"/api/v1/prompts/{name}")

    def create_version(self, name: str, template: str, *, variables: list[dict] | None = None,
                       params: dict | None = None, message: str | None = None) -> dict:
        """Save a new version; identical content to the latest returns that version unchanged."""
        body = _drop_none({"template": template, "variables": variables, "params": params, "message": message})
        return self._json("POST", f"/api/v1/prompts/{name}/versions", json_body=body)

    def list_versions(self, name: str, limit: int = 50, offset: int = 0) -> dict:
        """A prompt's versions, newest first."""
        return self._json("GET", f"/api/v1/prompts/{name}/versions", params={"limit": limit, "offset": offset})

    def get_version(self, name: str, version: int) -> dict:
        """One version of a prompt."""
        return self._json("GET", f"/api/v1/prompts/{name}/versions/{version}")

    def diff(self, name: str, from_version: int, to_version: int) -> str:
        """The unified diff between two versions of a prompt."""
        return self._json("GET", f"/api/v1/prompts/{name}/diff", params={"from": from_version, "to": to_version})["diff"]

    def set_label(self, name: str, label: str, version: int) -> dict:
        """Point `label` (e.g. `production`) at `version`; returns the label with its history."""
        return self._json("PUT", f"/api/v1/prompts/{name}/labels/{label}", json_body={"version": version})

    def get_label(self, name: str, label: str) -> dict:
        """A label with its version and history of moves."""
        return self._json("GET", f"/api/v1/prompts/{name}/labels/{label}")

    def rollback_label(self, name: str, label: str) -> dict:
        """Move `label` back to the version it pointed at before."""
        return self._json("POST", f"/api/v1/prompts/{name}/labels/{label}/rollback")

    def render(self, name: str, variables: dict, *, version: int | None = None, label: str | None = None) -> dict:
        """Render a version's template: `{"text", "version"}`."""
        body = _drop_none({"variables": variables, "version": version, "label": label})
        return self._json("POST", f"/api/v1/prompts/{name}/render", json_body=body)

    def import_prompts(self, library: dict | str) -> dict:
        """Import a library export (a dict, or YAML/JSON text); returns the counts created."""
        if isinstance(library, str):
            return self._json("POST", "/api/v1/prompts/import", content=library.encode(),
                              headers={"Content-Type": "application/yaml"})
        return self._json("POST", "/api/v1/prompts/import", json_body=library)

    def export_prompts(self) -> dict:
        """The whole library, re-importable without loss."""
        return self._json("GET", "/api/v1/prompts/export")

    # Experiments

    def list_experiments(self, limit: int = 50, offset: int = 0) -> dict:
        """List experiments."""
        return self._json("GET", "/api/v1/experiments", params={"limit": limit, "offset": offset})

    def create_experiment(self, name: str, prompt: str, arms: list[dict], **extra: Any) -> dict:
        """Create an A/B test: `arms=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]`."""
        return self._json("POST", "/api/v1/experiments", json_body={"name": name, "prompt": prompt, "arms": arms, **extra})

    def get_experiment(self, name: str) -> dict:
        """One experiment."""
        return self._json("GET", f"/api/v1/experiments/{name}")

    def stop_experiment(self, name: str) -> dict:
        """Stop an experiment: runs naming it get no arm any more; its results stay."""
        return self._json("POST", f"/api/v1/experiments/{name}/stop")

    def assign(self, name: str, subject: str) -> dict:
        """Assign `subject` its sticky arm in the experiment, recorded (editor): `{"version": n}`."""
        return self._json("POST", f"/api/v1/experiments/{name}/assign", json_body={"subject": subject})

    def peek_assignment(self, name: str, subject: str) -> dict:
        """The arm `subject` sees or would see, recording nothing (viewer): `{"version": n}`."""
        return self._json("GET", f"/api/v1/experiments/{name}/assign", params={"subject": subject})

    def experiment_results(self, name: str) -> dict:
        """Per-arm results with `p_value` and `winner` (null unless significant)."""
        return self._json("GET", f"/api/v1/experiments/{name}/results")

    # API keys

    def create_key(self, role: str, name: str = "") -> dict:
        """Create an API key (admin); the secret `key` is in this answer only."""
        return self._json("POST", "/api/v1/keys", json_body={"role": role, "name": name})

    def list_keys(self) -> dict:
        """List keys, without secrets (admin)."""
        return self._json("GET", "/api/v1/keys")

    def delete_key(self, key_id: int) -> None:
        """Revoke a key (admin)."""
        self._send("DELETE", f"/api/v1/keys/{key_id}")

    # Models and plugins

    def list_plugins(self) -> dict:
        """Installed plugins: name, kind, version, status."""
        return self._json("GET", "/api/v1/plugins")

    def list_models(self) -> dict:
        """Registered models and presets with `status` (available, not_downloaded, loaded, error)."""
        return self._json("GET", "/api/v1/models")

    def get_model(self, name: str) -> dict:
        """One registered model."""
        return self._json("GET", f"/api/v1/models/{name}")

    def register_model(self, name: str, plugin: str, source: str, *, quantization: str | None = None,
                       params: dict | None = None, pricing: dict | None = None, **extra: Any) -> dict:
        """Register a model for a plugin (`transformers` with a hub id or local path, `openai-compatible` with a URL)."""
        body = _drop_none({"name": name, "plugin": plugin, "source": source, "quantization": quantization,
                           "params": params, "pricing": pricing, **extra})
        return self._json("POST", "/api/v1/models", json_body=body)

    def update_model(self, name: str, **changes: Any) -> dict:
        """Fix a model (admin): any of source, revision, quantization, params, pricing, options, description.

        Only the keyword arguments given change; `quantization=None` or `revision=None` clears them."""
        return self._json("PATCH", f"/api/v1/models/{name}", json_body=changes)

    def remove_model(self, name: str, *, archive: bool = False) -> dict:
        """Delete a model (admin); one that executions name is refused (409) unless `archive=True`."""
        return self._json("DELETE", f"/api/v1/models/{name}", params={"archive": "true"} if archive else None)

    def load_model(self, name: str) -> dict:
        """Load a model into memory; returns it with its new status."""
        return self._json("POST", f"/api/v1/models/{name}/load")

    def unload_model(self, name: str) -> dict:
        """Free a loaded model; returns it with its new status."""
        return self._json("POST", f"/api/v1/models/{name}/unload")

    def pull_model(self, name: str) -> dict:
        """Start downloading a model's weights on the server (admin); returns the pull's state."""
        return self._json("POST", f"/api/v1/models/{name}/pull")

    def pull_status(self, name: str) -> dict:
        """A model's latest pull: state, downloaded_bytes, total_bytes, error, started_at, finished_at."""
        return self._json("GET", f"/api/v1/models/{name}/pull")

    # Executions

    @staticmethod
    def _execution_body(model: str, prompt: str | None, *, input: str | list[dict] | None = None,
                        version: int | None = None, label: str | None = None, experiment: str | None = None,
                        subject: str | None = None, variables: dict | None = None, params: dict | None = None,
                        cache: bool | None = None) -> dict:
        return _drop_none({"model": model, "prompt": prompt, "input": input, "version": version, "label": label,
                           "experiment": experiment, "subject": subject, "variables": variables,
                           "params": params, "cache": cache})

    def execute(self, model: str, prompt: str | None = None, **options: Any) -> dict:
        """Run a prompt (or raw `input=`) on `model` to completion; returns the execution record.

        Options: `input`, `version`, `label`, `experiment`, `subject`, `variables`, `params`, `cache`.
        """
        return self._json("POST", "/api/v1/executions", json_body=self._execution_body(model, prompt, **options))

    def stream(self, model: str, prompt: str | None = None, **options: Any) -> ExecutionStream:
        """Run with streaming: iterate the returned stream for text deltas, then read `stream.execution`."""
        body = {**self._execution_body(model, prompt, **options), "stream": True}
        request = self._http.build_request("POST", "/api/v1/executions", json=body,
                                           headers={"Accept": "text/event-stream"})
        return ExecutionStream(self._http, request, self.base_url)

    def list_executions(self, *, prompt: str | None = None, version: int | None = None, model: str | None = None,
                        status: str | None = None, since: str | None = None, until: str | None = None,
                        cache_hit: bool | None = None, limit: int = 50, offset: int = 0) -> dict:
        """The execution log, newest first, with the API's filters."""
        return self._json("GET", "/api/v1/executions", params=self._filters(locals()))

    def get_execution(self, execution_id: int) -> dict:
        """One execution with its rendered input, output, params, timings and feedback."""
        return self._json("GET", f"/api/v1/executions/{execution_id}")

    def feedback(self, execution_id: int, rating: int, comment: str | None = None) -> dict:
        """Rate an execution from 1 to 5, with an optional comment."""
        body = _drop_none({"rating": rating, "comment": comment})
        return self._json("POST", f"/api/v1/executions/{execution_id}/feedback", json_body=body)

    def export_executions(self, format: str = "jsonl", *, prompt: str | None = None, version: int | None = None,
                          model: str | None = None, status: str | None = None, since: str | None = None,
                          until: str | None = None, cache_hit: bool | None = None) -> bytes:
        """The filtered execution log as a CSV or JSONL file's bytes."""
        params = {**self._filters(locals()), "format": format}
        return self._send("GET", "/api/v1/executions/export", params=params).content

    def analytics(self, group_by: str = "model", **filters: Any) -> dict:
        """Per group (model, prompt, version, day): count, success rate, latency p50/p95, tokens, cost, cache hits."""
        return self._json("GET", "/api/v1/analytics", params={"group_by": group_by, **self._filters(filters)})

    def cache_stats(self) -> dict:
        """Response cache: `{"entries", "hits", "misses", "hit_rate"}`."""
        return self._json("GET", "/api/v1/cache/stats")

    @staticmethod
    def _filters(values: dict[str, Any]) -> dict[str, Any]:
        """Query parameters from keyword filters: booleans as true/false, None and `self` dropped."""
        out = {}
        for key, value in values.items():
            if key in ("self", "format") or value is None:
                continue
            out[key] = str(value).lower() if isinstance(value, bool) else value
        return out

    # Evaluations

    def start_eval(self, dataset: str, model: str, *, prompt: str | None = None, version: int | None = None,
                   label: str | None = None, n: int | None = None, k: list[int] | None = None,
                   params: dict | None = None, limit: int | None = None, mode: str | None = None,
                   timeout: float | None = None, dataset_path: str | None = None) -> dict:
        """Start an evaluation run (HumanEval, MBPP or a custom dataset); returns the queued run. `params`: generation
        params for every sample; `timeout`: seconds each sample's tests may run; `dataset_path`: a JSONL copy of the
        dataset on the server (MBPP without the hub, say)."""
        body = _drop_none({"dataset": dataset, "model": model, "prompt": prompt, "version": version, "label": label,
                           "n": n, "k": k, "params": params, "limit": limit, "mode": mode, "timeout": timeout,
                           "dataset_path": dataset_path})
        return self._json("POST", "/api/v1/evals", json_body=body)

    def resume_eval(self, run_id: int) -> dict:
        """Take up a stopped run where it stopped (what it has is kept); returns the queued run."""
        return self._json("POST", f"/api/v1/evals/{run_id}/resume")

    def list_evals(self, limit: int = 50, offset: int = 0) -> dict:
        """Evaluation runs, newest first."""
        return self._json("GET", "/api/v1/evals", params={"limit": limit, "offset": offset})

    def get_eval(self, run_id: int) -> dict:
        """An evaluation run with `status`, `progress` and `pass_at_k`."""
        return self._json("GET", f"/api/v1/evals/{run_id}")

    def eval_samples(self, run_id: int, limit: int = 500, offset: int = 0) -> dict:
        """Per sample of a run: `task_id`, `completion`, `passed`, `result`."""
        return self._json("GET", f"/api/v1/evals/{run_id}/samples", params={"limit": limit, "offset": offset})

    def compare_evals(self, a: int, b: int) -> dict:
        """Per-task differences between two runs and a paired significance test."""
        return self._json("GET", "/api/v1/evals/compare", params={"a": a, "b": b})

    def list_datasets(self) -> dict:
        """Datasets a run can use: `name`, `kind` (builtin, custom), `tasks` (None if unknown), `description`."""
        return self._json("GET", "/api/v1/evals/datasets")

    def register_dataset(self, name: str, jsonl: str) -> dict:
        """Register JSONL text (one task per line, as `promptyard eval register-dataset` reads) as dataset `name`."""
        return self._json("POST", "/api/v1/evals/datasets", json_body={"name": name, "jsonl": jsonl})

    # Training

    def training_data(self, format: str = "sft", **filters: Any) -> dict:
        """Training rows from history/evals/a dataset: `rows`, `counts` per source, `items` (the first rows)."""
        params = {key: ",".join(value) if isinstance(value, list) else value for key, value in filters.items()}
        return self._json("GET", "/api/v1/training/data", params=_drop_none({"format": format, **params}))

    def start_training(self, base_model: str, name: str, *, method: str = "sft", data: dict | None = None,
                       params: dict | None = None) -> dict:
        """Start a LoRA fine-tuning of `base_model` that registers `name`; returns the queued training."""
        body = {"base_model": base_model, "name": name, "method": method, "data": data or {}, "params": params or {}}
        return self._json("POST", "/api/v1/trainings", json_body=body)

    def list_trainings(self, limit: int = 50, offset: int = 0) -> dict:
        return self._json("GET", "/api/v1/trainings", params={"limit": limit, "offset": offset})

    def get_training(self, training_id: int) -> dict:
        """A training with `status`, `progress` {step, total}, `losses` [{step, loss}], `model`, `error`."""
        return self._json("GET", f"/api/v1/trainings/{training_id}")

    def cancel_training(self, training_id: int) -> dict:
        return self._json("POST", f"/api/v1/trainings/{training_id}/cancel")

    def export_model(self, name: str, to: str, *, merge: bool = False, push: str | None = None) -> dict:
        """Export a model's adapter (or merged weights), tokenizer and model card to a folder on the server."""
        return self._json("POST", f"/api/v1/models/{name}/export", json_body={"to": to, "merge": merge, "push": push})
