"""The `openai-compatible` backend: any server speaking /v1/chat/completions and /v1/completions (vLLM, TGI, ...)."""

from __future__ import annotations

import email.utils
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generator, Iterator

import httpx

from promptyard.errors import PromptyardError, TooManyRequests, Unavailable, Unprocessable
from promptyard.plugins.base import (
    BatchItem,
    BatchResult,
    Generation,
    GenerationParams,
    LLMPlugin,
    PromptInput,
    sample_params,
)
from promptyard.plugins.textgen import StopBuffer, cut_at_stop

DEFAULTS = {
    "timeout": 120.0,  # seconds to wait for a response (or for the next streamed chunk)
    "connect_timeout": 5.0,
    "max_retries": 3,  # on 429, 5xx and connection failures; never on a read timeout (generation may be slow)
    "backoff": 0.5,  # seconds before the first retry; doubles each time
    "max_backoff": 8.0,
    "max_retry_after": 30.0,  # a Retry-After longer than this is passed on to our caller instead of waited out
    # Requests this model has in flight at once from batches (evaluation runs): the server (vLLM, TGI, llama.cpp's)
    # batches concurrent requests itself; the bound keeps one run from flooding it.
    "max_in_flight": 8,
}


def rough_token_count(text: str) -> int:
    """About four characters a token: used only when the server reports no usage."""
    return max(1, round(len(text) / 4)) if text else 0


def _retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except ValueError:
        pass
    return response.text[:200] or response.reason_phrase


class _Retryable(Exception):
    """A failure worth another attempt, carrying the error to raise when attempts run out."""

    def __init__(self, error: PromptyardError, wait: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait = wait


class OpenAICompatiblePlugin(LLMPlugin):
    """Options: model, api_key_env (the NAME of an env var), timeout, connect_timeout, max_retries, backoff."""

    name = "openai-compatible"
    description = "Any OpenAI-compatible server (vLLM, TGI, llama.cpp server, Ollama); source is its base URL."
    operational_options = frozenset(DEFAULTS) | {"api_key_env"}

    def __init__(
        self,
        source: str,
        *,
        revision: str | None = None,
        quantization: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(source, revision=revision, quantization=quantization, options=options)
        if not source.startswith(("http://", "https://")):
            raise Unprocessable(
                f"The openai-compatible source must be the server's base URL, like http://host:8000/v1 "
                f"(got '{source}').", code="invalid_source", details={"source": source},
            )
        if "api_key" in self.options:
            raise Unprocessable(
                "Do not store API keys in the model's options: put the key in an environment variable and give "
                "its name as options.api_key_env.", code="api_key_in_options",
            )
        if quantization:
            raise Unprocessable("Quantization is the serving backend's business, not promptyard's, for "
                                "openai-compatible models.", code="invalid_quantization")
        self.model_name = self.options.get("model") or revision
        if not self.model_name:
            raise Unprocessable("Name the served model with options.model (or revision) for an openai-compatible "
                                "source.", code="model_name_required")
        try:
            self.settings = {key: float(self.options.get(key, default)) for key, default in DEFAULTS.items()}
        except (TypeError, ValueError) as exc:
            raise Unprocessable(f"Bad timeout or retry option: {exc}", code="invalid_options") from exc
        if self.settings["max_in_flight"] < 1:
            raise Unprocessable("options.max_in_flight must be at least 1.", code="invalid_options")
        self.base_url = source.rstrip("/")
        self._client: httpx.Client | None = None
        # Shared by every batch on this model (one plugin instance serves one registered model).
        self._in_flight = threading.BoundedSemaphore(int(self.settings["max_in_flight"]))
        self.last_error: str | None = None  # why status() last said "error"

    # --- connection ------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        env_name = self.options.get("api_key_env")
        if not env_name:
            return {}
        key = os.environ.get(env_name)
        if not key:
            raise Unavailable(f"The API key variable {env_name} is not set in promptyard's environment.",
                              code="api_key_missing", details={"api_key_env": env_name})
        return {"Authorization": f"Bearer {key}"}

    def _http(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(
                base_url=self.base_url,
                timeout=httpx.Timeout(self.settings["timeout"], connect=self.settings["connect_timeout"]),
            )
        return self._client

    def load(self) -> None:
        self._http()

    def unload(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def status(self) -> str:
        if self._client is not None:
            return "loaded"
        self.last_error = None
        try:
            response = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=2.0)
        except Unavailable as exc:
            self.last_error = exc.message
            return "error"
        except httpx.HTTPError as exc:
            self.last_error = f"The model server at {self.base_url} could not be reached ({exc.__class__.__name__}" \
                              + (f": {exc}" if str(exc) else "") + ")."
            return "error"
        if response.status_code >= 500:
            self.last_error = f"The model server at {self.base_url} answered {response.status_code}."
            return "error"
        return "available"

    def context_length(self) -> int | None:
        value = self.options.get("context_length")
        return int(value) if value else None

    # --- requests ----------------------------------------------------------------------------------------------

    def _payload(self, prompt: PromptInput, params: GenerationParams, stream: bool) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"model": self.model_name, "max_tokens": params.max_new_tokens}
        if params.do_sample and params.temperature > 0:
            payload.update(temperature=params.temperature, top_p=params.top_p)
        else:
            payload["temperature"] = 0.0
        if params.seed is not None:
            payload["seed"] = params.seed
        if params.stop:
            payload["stop"] = list(params.stop)
        if stream:
            payload.update(stream=True, stream_options={"include_usage": True})
        if isinstance(prompt, str):
            return "/completions", {**payload, "prompt": prompt}
        return "/chat/completions", {**payload, "messages": prompt}

    def _attempt(self, path: str, payload: dict[str, Any], stream: bool) -> httpx.Response:
        """One request; raises _Retryable for what a retry may fix and our error for what it cannot."""
        client = self._http()
        url = f"{self.base_url}{path}"
        try:
            request = client.build_request("POST", path, json=payload, headers=self._headers())
            response = client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            error = Unavailable(
                f"The model server at {self.base_url} did not answer within {self.settings['timeout']:g} seconds.",
                code="backend_timeout", details={"url": url, "reason": exc.__class__.__name__},
            )
            if isinstance(exc, httpx.ConnectTimeout):
                raise _Retryable(error) from exc
            raise error from exc
        except httpx.TransportError as exc:
            raise _Retryable(Unavailable(
                f"Cannot reach the model server at {self.base_url}: {exc or exc.__class__.__name__}.",
                code="backend_unreachable", details={"url": url, "reason": str(exc) or exc.__class__.__name__},
            )) from exc
        if response.status_code < 400:
            return response
        if stream:
            response.read()
        response.close()
        message = _server_message(response)
        details = {"url": url, "status": response.status_code, "reason": message}
        if response.status_code == 429:
            wait = _retry_after_seconds(response)
            raise _Retryable(TooManyRequests(
                f"The model server at {self.base_url} is rate limiting: {message}",
                retry_after=wait or 1.0, code="backend_rate_limited", details=details,
            ), wait)
        if response.status_code >= 500:
            raise _Retryable(Unavailable(
                f"The model server at {self.base_url} failed with HTTP {response.status_code}: {message}",
                code="backend_error", details=details,
            ), _retry_after_seconds(response))
        if response.status_code in (400, 413, 422):
            raise Unprocessable(f"The model server refused the request: {message}", code="backend_rejected",
                                details=details)
        raise Unavailable(
            f"The model server at {self.base_url} answered HTTP {response.status_code}: {message}",
            code="backend_error", details=details,
        )

    def _request(self, path: str, payload: dict[str, Any], stream: bool) -> httpx.Response:
        """Send with bounded retries and exponential backoff (Retry-After honoured, within reason)."""
        attempts = int(self.settings["max_retries"]) + 1
        for attempt in range(attempts):
            try:
                return self._attempt(path, payload, stream)
            except _Retryable as retry:
                delay = min(self.settings["max_backoff"], self.settings["backoff"] * 2**attempt)
                if retry.wait is not None:
                    if retry.wait > self.settings["max_retry_after"]:
                        raise retry.error from None
                    delay = retry.wait
                if attempt == attempts - 1:
                    retry.error.details["attempts"] = attempts
                    raise retry.error from None
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _garbage(self, what: str, detail: str = "") -> Unavailable:
        return Unavailable(
            f"The model server at {self.base_url} returned {what}, not an OpenAI-style completion.",
            code="backend_bad_response", details={"reason": detail[:200]} if detail else {},
        )

    # --- generation --------------------------------------------------------------------------------------------

    def generate(self, prompt: PromptInput, params: GenerationParams) -> Generation:
        path, payload = self._payload(prompt, params, stream=False)
        started = time.perf_counter()
        response = self._request(path, payload, stream=False)
        try:
            body = response.json()
        except ValueError as exc:
            raise self._garbage("malformed JSON", response.text) from exc
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] if "messages" in payload else choice["text"]
            if not isinstance(text, str):
                raise TypeError("text is not a string")
        except (KeyError, IndexError, TypeError) as exc:
            raise self._garbage("a response without a completion", json.dumps(body)[:200]) from exc
        text, stopped = cut_at_stop(text, params.stop)
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        return Generation(
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or rough_token_count(_prompt_text(prompt))),
            tokens_out=int(usage.get("completion_tokens") or rough_token_count(text)),
            finish_reason="stop" if stopped else _finish_reason(choice.get("finish_reason")),
            timings={"generate": (time.perf_counter() - started) * 1000},
        )

    def generate_batch(self, items: list[BatchItem]) -> BatchResult:
        """Every sample as its own request, at most max_in_flight of this model's at once (the server batches them);
        each sample's failure stays its own."""
        samples = [(index, sample) for index, item in enumerate(items) for sample in range(item.n)]
        results: BatchResult = [[None] * item.n for item in items]  # type: ignore[list-item]
        if not samples:
            return results

        def one(index: int, sample: int) -> Generation | Exception:
            with self._in_flight:
                try:
                    return self.generate(items[index].prompt, sample_params(items[index].params, sample))
                except Exception as exc:  # noqa: BLE001 - one failed sample must not lose the others
                    return exc

        workers = min(len(samples), int(self.settings["max_in_flight"]))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="promptyard-batch") as pool:
            futures = [pool.submit(one, index, sample) for index, sample in samples]
            for (index, sample), future in zip(samples, futures):
                results[index][sample] = future.result()
        return results

    def stream(self, prompt: PromptInput, params: GenerationParams) -> Generator[str, None, Generation]:
        path, payload = self._payload(prompt, params, stream=True)
        chat = "messages" in payload
        started = time.perf_counter()
        first_token_ms: float | None = None
        buffer = StopBuffer(params.stop)
        usage: dict[str, Any] = {}
        finish: str | None = None
        response = self._request(path, payload, stream=True)
        try:  # closing this generator early closes the response, so the server sees the client go away
            for chunk in self._events(response):
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    finish = choice.get("finish_reason") or finish
                    delta = buffer.feed(piece) if isinstance(piece, str) else ""
                    if delta:
                        first_token_ms = first_token_ms if first_token_ms is not None else (
                            (time.perf_counter() - started) * 1000)
                        yield delta
                if buffer.stopped:
                    break
            rest = buffer.flush()
            if rest:
                yield rest
        finally:
            response.close()
        return Generation(
            text=buffer.text,
            tokens_in=int(usage.get("prompt_tokens") or rough_token_count(_prompt_text(prompt))),
            tokens_out=int(usage.get("completion_tokens") or rough_token_count(buffer.text)),
            finish_reason="stop" if buffer.stopped else _finish_reason(finish),
            timings={"first_token": first_token_ms or 0.0, "generate": (time.perf_counter() - started) * 1000},
        )

    def _events(self, response: httpx.Response) -> Iterator[dict[str, Any]]:
        """The JSON payloads of an SSE stream's `data:` lines, up to `[DONE]`."""
        events = 0
        try:
            for line in response.iter_lines():
                if not line.startswith("data:"):
                    continue  # blank separators, comments (":"), event names
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                try:
                    chunk = json.loads(data)
                except ValueError as exc:
                    raise self._garbage("a malformed stream event", data) from exc
                if not isinstance(chunk, dict):
                    raise self._garbage("a stream event that is not an object", data)
                events += 1
                yield chunk
        except httpx.TimeoutException as exc:
            raise Unavailable(
                f"The model server at {self.base_url} stopped sending for {self.settings['timeout']:g} seconds.",
                code="backend_timeout", details={"reason": exc.__class__.__name__},
            ) from exc
        except httpx.TransportError as exc:
            raise Unavailable(f"The model server at {self.base_url} dropped the stream: {exc}",
                              code="backend_unreachable", details={"reason": str(exc)}) from exc
        if not events:  # some servers omit [DONE], but a stream with no events at all is not a completion
            raise self._garbage("an empty or non-SSE stream", response.headers.get("content-type", ""))


def _prompt_text(prompt: PromptInput) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(str(message.get("content", "")) for message in prompt)


def _finish_reason(value: Any) -> str:
    if value in (None, "", "eos", "eos_token", "stop_sequence"):
        return "stop"
    return str(value)
