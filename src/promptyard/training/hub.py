"""Pushing to the Hugging Face Hub with huggingface_hub's upload API: an exported model folder, or the prompt
library as a dataset repository."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from promptyard.errors import Unavailable, Unprocessable

REPO_ID_PARTS = 2


def check_repo_id(repo_id: str | None, field: str = "push") -> None:
    """'org/name' (422 naming the field otherwise); None passes (nothing to push)."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if repo_id is not None and (len(parts) != REPO_ID_PARTS or not all(part.strip() for part in parts)):
        raise Unprocessable(f"'{field}' must be a Hub repository as 'org/name', not {repo_id!r}.",
                            code="invalid_repo_id", details={"field": field})


def push_folder(folder: Path, repo_id: str, *, token: str | None = None, repo_type: str = "model") -> str:
    """Create the repository if needed and upload the folder in one commit (HF_ENDPOINT chooses the Hub, HF_TOKEN
    or `token` authenticates); returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=os.environ.get("HF_ENDPOINT") or None, token=token or os.environ.get("HF_TOKEN"))
    try:
        api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                 commit_message="Upload from promptyard")
    except Exception as exc:  # noqa: BLE001 - the Hub client raises its HTTP library's own types too
        raise Unavailable(f"Pushing to the Hub repository '{repo_id}' failed: {exc}", code="hub_push_failed",
                          details={"repo": repo_id}) from exc
    return str(info.commit_url if hasattr(info, "commit_url") else info)


def push_prompt_library(repo_id: str, *, token: str | None = None) -> dict:
    """The prompt library as a Hub dataset: prompts.jsonl (one prompt with its versions and labels per line),
    promptyard-library.yaml (what `promptyard prompts import` reads back) and a dataset card."""
    from huggingface_hub import DatasetCard, DatasetCardData

    from promptyard.prompts.transfer import dump, export_library

    check_repo_id(repo_id, "repo")
    document = export_library()
    prompts = document["prompts"]
    if not prompts:
        raise Unprocessable("The prompt library is empty; there is nothing to push.", code="empty_library")
    data = DatasetCardData(tags=["promptyard", "prompts", "code"],
                           configs=[{"config_name": "default", "data_files": "prompts.jsonl"}])
    versions = sum(len(p["versions"]) for p in prompts)
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n# Prompt library\n\n{len(prompts)} prompts ({versions} "
                       f"versions) exported from promptyard. `prompts.jsonl` holds one prompt per line with all "
                       f"its versions and labels; `promptyard-library.yaml` is the same library as "
                       f"`promptyard prompts import` reads it.\n")
    with tempfile.TemporaryDirectory(prefix="promptyard-prompts-") as folder:
        root = Path(folder)
        (root / "prompts.jsonl").write_text(
            "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in prompts), encoding="utf-8")
        (root / "promptyard-library.yaml").write_text(dump(document, "yaml"), encoding="utf-8")
        card.save(str(root / "README.md"))
        url = push_folder(root, repo_id, token=token, repo_type="dataset")
    return {"repo": repo_id, "prompts": len(prompts), "versions": versions, "pushed": url}
