"""Where a transformers model's files are: a local folder or the Hugging Face cache; downloading them."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from promptyard.errors import NotFound, Unavailable
from promptyard.plugins.base import Progress

WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")


def looks_like_path(source: str) -> bool:
    """A source written as a path (absolute, ./, ../, ~) is never a hub id."""
    return source.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(source) or source.count("/") > 1


def local_folder(source: str) -> Path | None:
    """The folder the source names when it exists on disk."""
    path = Path(source).expanduser()
    return path if path.is_dir() else None


def cached_snapshot(repo_id: str, revision: str | None, cache_dir: str | None) -> Path | None:
    """The cached snapshot folder of a hub model when its config and some weights are in the local cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config_path = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
        return None
    if not isinstance(config_path, str):
        return None
    snapshot = Path(config_path).parent
    if any(next(snapshot.rglob(pattern), None) for pattern in WEIGHT_PATTERNS):
        return snapshot
    return None


def missing_weights_error(repo_id: str, model: str | None = None) -> Unavailable:
    """The error for a hub model whose weights are not on this machine (`model`: its registered name, if known)."""
    pull = f"`promptyard models pull {model}`" if model else "`promptyard models pull` with the model's name"
    return Unavailable(
        f"The weights of '{repo_id}' are not downloaded on this machine. Fetch them with "
        f"{pull} (needs access to huggingface.co), or copy the model folder here "
        f"and register it with `promptyard models register --source /path/to/folder`.",
        code="model_not_downloaded",
        details={"source": repo_id},
    )


def download_snapshot(repo_id: str, *, revision: str | None, cache_dir: str | None, progress: Progress,
                      allow_patterns: list[str] | None = None) -> str:
    """Download a hub model into the cache (tqdm bars, or a bytes callback) and return its folder; errors say how.

    `allow_patterns`: only the files matching these (one GGUF file of a repository holding several quantizations).
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kwargs = {"revision": revision, "cache_dir": cache_dir}
    if allow_patterns is not None:
        kwargs["allow_patterns"] = allow_patterns
    if callable(progress):
        kwargs["tqdm_class"] = reporting_tqdm(progress)
    elif not progress:
        from tqdm.auto import tqdm

        class _Silent(tqdm):
            def __init__(self, *args, **kw):
                kw["disable"] = True
                super().__init__(*args, **kw)

        kwargs["tqdm_class"] = _Silent
    try:
        return snapshot_download(repo_id, **kwargs)
    except GatedRepoError as exc:
        raise Unavailable(
            f"'{repo_id}' is gated on the Hugging Face hub: accept its licence on huggingface.co and set HF_TOKEN.",
            code="model_gated", details={"source": repo_id, "reason": str(exc).splitlines()[0]},
        ) from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise NotFound(
            f"The Hugging Face hub has no model '{repo_id}'" + (f" at revision '{revision}'." if revision else "."),
            code="hub_model_not_found", details={"source": repo_id},
        ) from exc
    except (OfflineModeIsEnabled, LocalEntryNotFoundError) as exc:
        raise unreachable_hub_error(repo_id, exc) from exc
    except Exception as exc:  # noqa: BLE001 - httpx/network errors differ between huggingface_hub versions
        if _is_network_error(exc):
            raise unreachable_hub_error(repo_id, exc) from exc
        raise


def unreachable_hub_error(repo_id: str, exc: BaseException) -> Unavailable:
    """The hub cannot be reached (offline, firewalled): say so, and how to get the model anyway."""
    return Unavailable(
        f"Cannot download '{repo_id}': the Hugging Face hub (huggingface.co) cannot be reached from this machine "
        f"({exc.__class__.__name__}). Download it where the hub is reachable and copy the folder here, then "
        f"register it with `promptyard models register --source /path/to/folder`; or point HF_HUB_CACHE at a "
        f"cache that has it and set HF_HUB_OFFLINE=1.",
        code="hub_unreachable",
        details={"source": repo_id, "reason": str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__},
    )


def _is_network_error(exc: BaseException) -> bool:
    import httpx

    seen = exc
    while seen is not None:
        if isinstance(seen, (httpx.TransportError, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def reporting_tqdm(report: Callable[[int, int | None], None]):
    """A silent tqdm class for snapshot_download that passes the byte count of its overall bar to `report`."""
    from tqdm.auto import tqdm

    class _Reporting(tqdm):
        def __init__(self, *args, **kw):
            # snapshot_download sums every file's bytes into its "Reconstructing" bar; others count files or wire bytes.
            self._reports = kw.get("unit") == "B" and str(kw.get("desc", "")).startswith("Reconstructing")
            self._bytes = int(kw.get("initial") or 0)
            kw["disable"] = True
            super().__init__(*args, **kw)

        def update(self, n=1):
            # A disabled tqdm counts nothing, so the bytes are summed here.
            super().update(n)
            self._bytes += int(n or 0)
            self._report()

        def refresh(self, *args, **kw):
            super().refresh(*args, **kw)
            self._report()

        def _report(self):
            if self._reports:
                report(self._bytes, int(self.total) if self.total else None)

    return _Reporting
