"""Where the project is, and what a relative path in a spec means: the working directory first,
then the project root (a deployment runs there, wherever it was started from)."""

from __future__ import annotations

from pathlib import Path

from trbench.data import remote

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path:
    """Relative paths mean the working directory first, then the project root (deployments run there)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else PROJECT_ROOT / p


def output_root(output_dir: str) -> Path:
    """The local folder a spec's output_dir stands for: resolved as above, or for a URL (s3://...) the working
    copy the pipeline writes in (trbench.data.remote)."""
    return remote.working_copy(output_dir) if remote.is_url(output_dir) else resolve_path(output_dir)
