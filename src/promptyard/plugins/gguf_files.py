"""Where a GGUF model file is: a local `.gguf` path, or one file of a Hugging Face hub repository (the cache or a
download). No llama.cpp here: the plugin asks this module for a path and loads it."""

from __future__ import annotations

from pathlib import Path

from promptyard.errors import NotFound, Unavailable, Unprocessable
from promptyard.plugins.base import Progress
from promptyard.plugins.hf_files import download_snapshot, looks_like_path

GGUF_MAGIC = b"GGUF"


class GGUFSource:
    """A GGUF source: `path` (a local file) or `repo_id` + `filename` (a hub repository's file)."""

    def __init__(self, source: str, filename: str | None, *, revision: str | None, cache_dir: str | None) -> None:
        self.source = source
        self.revision = revision
        self.cache_dir = cache_dir
        if filename is not None and (not isinstance(filename, str) or not filename.endswith(".gguf")
                                     or filename.startswith("/") or ".." in Path(filename).parts):
            raise Unprocessable(f"options.file must name a .gguf file inside the repository (got {filename!r}).",
                                code="invalid_options", details={"option": "file"})
        if filename is None:
            if not (source.endswith(".gguf") or looks_like_path(source)):
                raise Unprocessable(
                    f"'{source}' is neither a .gguf file path nor a hub repository with a file named: give the "
                    f"path of a local .gguf file as the source, or a hub repository id as the source and the "
                    f"file in it as options.file (e.g. \"qwen2.5-coder-0.5b-instruct-q4_k_m.gguf\").",
                    code="invalid_source", details={"source": source},
                )
            self.path: Path | None = Path(source).expanduser()
            self.repo_id: str | None = None
        else:
            if looks_like_path(source):
                raise Unprocessable(
                    f"options.file names a file in a hub repository, but the source '{source}' is a path: give "
                    f"the .gguf file's path as the source and leave options.file out.",
                    code="invalid_source", details={"source": source},
                )
            self.path, self.repo_id = None, source
        self.filename = filename

    @property
    def is_local(self) -> bool:
        return self.path is not None

    def cached_file(self) -> Path | None:
        """The hub file in the local Hugging Face cache, when it is there."""
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(self.repo_id, self.filename, cache_dir=self.cache_dir,
                                           revision=self.revision)
        except Exception:  # noqa: BLE001 - an invalid repo id is simply not cached
            return None
        return Path(found) if isinstance(found, str) else None

    def resolve(self) -> Path:
        """The file to load (never the network): 404 for a missing local file, 503 for a hub file not pulled."""
        if self.path is not None:
            if not self.path.is_file():
                raise NotFound(f"There is no GGUF file at '{self.source}'.", code="model_path_not_found",
                               details={"source": self.source})
            return self.path
        cached = self.cached_file()
        if cached is None:
            raise Unavailable(
                f"'{self.filename}' from '{self.repo_id}' is not downloaded on this machine. Fetch it with "
                f"`promptyard models pull <model>` (needs access to huggingface.co), or copy the .gguf file here "
                f"and register it with `promptyard models register NAME --plugin llamacpp --source /path/file.gguf`.",
                code="model_not_downloaded", details={"source": self.repo_id, "file": self.filename},
            )
        return cached

    def status(self) -> str:
        """available / not_downloaded / error (a local path that is not a GGUF file)."""
        if self.path is not None:
            return "available" if is_gguf(self.path) else "error"
        return "available" if self.cached_file() is not None else "not_downloaded"

    def download(self, progress: Progress) -> Path:
        """The local file as it is, or the hub file fetched into the cache (tqdm bars or a bytes callback)."""
        if self.path is not None:
            return self.resolve()
        folder = download_snapshot(self.repo_id, revision=self.revision, cache_dir=self.cache_dir,
                                   progress=progress, allow_patterns=[self.filename])
        path = Path(folder) / self.filename
        if not path.is_file():
            raise NotFound(f"The hub repository '{self.repo_id}' has no file '{self.filename}'.",
                           code="hub_file_not_found", details={"source": self.repo_id, "file": self.filename})
        return path


def is_gguf(path: Path) -> bool:
    """Whether the file exists and starts with the GGUF magic bytes."""
    try:
        with path.open("rb") as handle:
            return handle.read(4) == GGUF_MAGIC
    except OSError:
        return False


# --- GGUF files in the transformers backend (transformers dequantizes them) --------------------------------------


def gguf_location(source: str, gguf_file: object) -> tuple[str, str | None]:
    """(the folder or hub repository to load from, the GGUF file's name in it or None): a `.gguf` source names the
    file itself; options.gguf_file names a file in the source folder or repository."""
    if gguf_file is not None and (not isinstance(gguf_file, str) or not gguf_file.endswith(".gguf")
                                  or "/" in gguf_file or "\\" in gguf_file or gguf_file.startswith(".")):
        raise Unprocessable(f"options.gguf_file must be the name of a .gguf file in the model's folder or repository "
                            f"(got {gguf_file!r}).", code="invalid_options", details={"option": "gguf_file"})
    if source.endswith(".gguf"):
        if gguf_file is not None:
            raise Unprocessable("The source is a .gguf file already: leave options.gguf_file out, or give the folder "
                                "as the source.", code="invalid_source", details={"source": source})
        path = Path(source).expanduser().resolve()
        return str(path.parent), path.name
    return source, gguf_file


def cached_gguf_folder(repo_id: str, filename: str, revision: str | None, cache_dir: str | None) -> Path | None:
    """The cached snapshot folder holding a hub repository's GGUF file, when it is in the local cache."""
    cached = GGUFSource(repo_id, filename, revision=revision, cache_dir=cache_dir).cached_file()
    return cached.parent if cached is not None else None


def gguf_parameter_count(path: Path) -> int:
    """Parameters in a GGUF file, from its tensor descriptions (the weights are not read)."""
    require_gguf_support()
    from gguf import GGUFReader

    return sum(int(tensor.n_elements) for tensor in GGUFReader(str(path)).tensors)


def require_gguf_support() -> None:
    """transformers reads GGUF files with the `gguf` package and needs `accelerate` to place their weights."""
    import importlib.util

    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise Unavailable(f"Loading a GGUF file with transformers needs the {' and '.join(missing)} package(s): "
                          f"pip install 'promptyard[gguf]'.", code="backend_missing", details={"missing": missing})
