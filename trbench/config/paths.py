"""Where the project is, and what a relative path in a spec means: the working directory first,
then the project root (a deployment runs there, wherever it was started from)."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def resolve_path(path: str) -> Path:
    """Relative paths mean the working directory first, then the project root (deployments run there)."""
    p = Path(path)
    return p if p.is_absolute() or p.exists() else PROJECT_ROOT / p
