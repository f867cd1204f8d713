"""Model weights on disk: whether they are there, and `pull` from the Hugging Face hub with a progress bar."""

from __future__ import annotations

import os
from pathlib import Path

from promptyard.errors import Forbidden, NotFound, Unavailable, Unprocessable

# Plugins whose `source` is a hub id or a local folder of weights; others (API backends) have nothing to pull.
WEIGHT_PLUGINS = ("transformers",)
TRUTHY = ("1", "true", "yes", "on")


def is_local_path(source: str) -> bool:
    """A source that names a folder (absolute, relative or home-relative) rather than a hub id."""
    return source.startswith(("/", "./", "../", "~")) or Path(source).expanduser().is_dir()


def hub_offline() -> bool:
    """Whether hub traffic is switched off (HF_HUB_OFFLINE, read now rather than at import like huggingface_hub)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY or bool(constants.HF_HUB_OFFLINE)


def weights_present(plugin: str, source: str, revision: str | None = None) -> bool:
    """True when the model can load without a download: a local folder with a config, or a cached hub snapshot."""
    if plugin not in WEIGHT_PLUGINS:
        return True
    if is_local_path(source):
        return (Path(source).expanduser() / "config.json").is_file()
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "config.json", revision=revision)
    except Exception:  # noqa: BLE001 - a malformed hub id simply means "not on disk"
        return False
    return isinstance(cached, str)


def how_to_get_weights(name: str, source: str) -> str:
    """The sentence every 'weights missing' error ends with."""
    return (
        f"Run 'promptyard models pull {name}' on a machine that can reach huggingface.co, "
        f"or copy the weights of '{source}' into a folder and register it with "
        f"'promptyard models register NAME --plugin transformers --source /path/to/folder'."
    )


def pull_weights(name: str, source: str, *, plugin: str, revision: str | None = None) -> str:
    """Download a hub model's snapshot into the local hub cache; returns the folder it lives in."""
    if plugin not in WEIGHT_PLUGINS:
        raise Unprocessable(
            f"Model '{name}' uses the '{plugin}' plugin, which serves it from '{source}': there are no weights to pull.",
            code="nothing_to_pull",
        )
    if is_local_path(source):
        if weights_present(plugin, source):
            return str(Path(source).expanduser())
        raise NotFound(
            f"Model '{name}' points at the folder '{source}', which holds no model (no config.json there).",
            code="weights_not_found",
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    offline = hub_offline()
    try:
        # huggingface_hub draws a tqdm progress bar per file on stderr while it downloads.
        return snapshot_download(repo_id=source, revision=revision, local_files_only=offline)
    except GatedRepoError as exc:
        raise Forbidden(
            f"'{source}' is gated on the Hugging Face hub: accept its licence on huggingface.co and set HF_TOKEN.",
            code="hub_gated",
        ) from exc
    except RepositoryNotFoundError as exc:
        raise NotFound(
            f"The Hugging Face hub has no model '{source}' (or it is private: set HF_TOKEN).", code="hub_repo_not_found"
        ) from exc
    except RevisionNotFoundError as exc:
        raise NotFound(f"'{source}' has no revision '{revision}' on the hub.", code="hub_revision_not_found") from exc
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise _unreachable(name, source, offline, reason="" if offline else _root_cause(exc)) from exc


def _root_cause(exc: BaseException) -> str:
    """The innermost error (e.g. 'ConnectError: Name or service not known'), which says why the hub failed."""
    seen = exc
    while (seen.__cause__ or seen.__context__) is not None and seen is not (seen.__cause__ or seen.__context__):
        seen = seen.__cause__ or seen.__context__
    if seen is exc and ": " in (str(exc).splitlines() or [""])[0]:
        return str(exc).splitlines()[0].removeprefix("Got: ")
    text = str(seen).splitlines()[0] if str(seen) else ""
    return f"{seen.__class__.__name__}: {text}" if text else seen.__class__.__name__


def _unreachable(name: str, source: str, offline: bool, reason: str = "") -> Unavailable:
    if offline:
        why = "HF_HUB_OFFLINE is set, so the Hugging Face hub is not contacted"
        fix = "Unset HF_HUB_OFFLINE on a machine with internet access and run the pull again"
    else:
        from huggingface_hub import constants

        why = f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached from this machine"
        why += f" ({reason})" if reason else ""
        fix = "Check the network or proxy (HTTPS_PROXY), or point HF_ENDPOINT at a reachable mirror, and run the pull again"
    return Unavailable(
        f"Cannot download '{source}': {why}, and its weights are not in the local cache. "
        f"{fix}; or copy the weights into a folder and register it with "
        f"'promptyard models register {name} --plugin transformers --source /path/to/folder'.",
        code="hub_unreachable",
        details={"source": source, "offline": offline},
    )

