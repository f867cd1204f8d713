"""`pull`: download a registered model's weights from the Hugging Face hub, with errors that say how to fix them."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from promptyard.errors import Unavailable, Unprocessable
from promptyard.plugins.base import LLMPlugin, Progress

if TYPE_CHECKING:
    from promptyard.db.models import ModelConfig

TRUTHY = ("1", "true", "yes", "on")


def hub_offline() -> bool:
    """Whether hub traffic is switched off (HF_HUB_OFFLINE, read now rather than at import like huggingface_hub)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUTHY or bool(constants.HF_HUB_OFFLINE)


def plugin_for(name: str) -> tuple[ModelConfig, LLMPlugin]:
    """A registered model's row and a fresh instance of its plugin (404 when the model is unknown)."""
    from promptyard.models.service import get_model
    from promptyard.plugins.registry import get_registry

    row = get_model(name)
    plugin = get_registry().create(row.plugin, row.source, revision=row.revision, quantization=row.quantization,
                                   options=dict(row.options or {}))
    return row, plugin


def has_weights(plugin: LLMPlugin) -> bool:
    """Whether the plugin fetches anything: plugins that keep the base `download` (URL-served ones) do not."""
    return type(plugin).download is not LLMPlugin.download


def nothing_to_pull(row: ModelConfig) -> Unprocessable:
    """The error for a model served from elsewhere (a URL): it has no weights here."""
    return Unprocessable(
        f"Model '{row.name}' uses the '{row.plugin}' plugin, which serves it from '{row.source}': "
        "there are no weights to pull.",
        code="nothing_to_pull", details={"model": row.name},
    )


def pull_model(name: str, *, progress: Progress = True) -> str:
    """Fetch a registered model's weights through its plugin (tqdm bars or a bytes callback); returns their folder."""
    row, plugin = plugin_for(name)
    offline = hub_offline()
    if offline and plugin.status() == "not_downloaded":
        # Said here, without a hub call: huggingface_hub reads HF_HUB_OFFLINE once, at import.
        raise unreachable(name, row.source, offline)
    try:
        folder = plugin.download(progress=progress)
    except Unavailable as exc:
        if exc.code != "hub_unreachable":
            raise
        raise unreachable(name, row.source, offline, reason=_root_cause(exc)) from exc
    if folder is None:
        raise nothing_to_pull(row)
    return folder


def unreachable(name: str, source: str, offline: bool, reason: str = "") -> Unavailable:
    """The hub cannot be reached: say exactly why, and the commands that get the model anyway."""
    from huggingface_hub import constants

    if offline:
        why = "HF_HUB_OFFLINE is set, so the Hugging Face hub is not contacted"
        fix = "Unset HF_HUB_OFFLINE on a machine with internet access and run the pull again"
    else:
        why = f"the Hugging Face hub ({constants.ENDPOINT}) cannot be reached from this machine"
        why += f" ({reason})" if reason else ""
        fix = ("Check the network or proxy (HTTPS_PROXY), or point HF_ENDPOINT at a reachable mirror, "
               "and run the pull again")
    return Unavailable(
        f"Cannot download '{source}': {why}, and its weights are not in the local cache. {fix}; or download the "
        f"model where the hub is reachable, copy the folder here and register it with "
        f"'promptyard models register {name}-local --plugin transformers --source /path/to/folder'.",
        code="hub_unreachable",
        details={"model": name, "source": source, "offline": offline, "reason": reason},
    )


def _root_cause(exc: BaseException) -> str:
    """The innermost error (e.g. 'ConnectError: [Errno 111] Connection refused'), which says why the hub failed."""
    seen: BaseException = exc
    while True:
        inner = seen.__cause__ or seen.__context__
        if inner is None or inner is seen:
            break
        seen = inner
    text = str(seen).splitlines()[0] if str(seen) else ""
    return f"{seen.__class__.__name__}: {text}" if text else seen.__class__.__name__
