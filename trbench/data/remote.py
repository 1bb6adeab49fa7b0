"""Results on object storage: an output_dir that is a URL (s3://bucket/prefix, gs://, az://, file://), through fsspec.

The pipeline works on local files; for a URL they are a working copy of the URL's TR folders in a folder under the
temp dir, made once per process and marked at its top (MARKER) with the URL it stands for, so that any process
handed a path below it (the validation worker) knows where the path lives. The rules that make it object storage:
- every file trbench writes is written there all or nothing (data.atomic), then sent whole in one request (push):
  a reader of the bucket sees a whole object or none, never part of one (a large file goes up as a multipart
  upload, which the store makes visible only when it completes);
- the ledger (the run files) is read from the bucket itself before each look (pull of its folder): a resume, or
  another host writing the same prefix, sees every finished run and none that only this copy has;
- a reader (report, export, compare, rerun) first copies the TR's prefix down (pull), then reads locally.
Credentials come from the backend's own environment and profiles (for s3: AWS_ACCESS_KEY_ID and the rest,
AWS_PROFILE and ~/.aws, AWS_ENDPOINT_URL for an S3-compatible server): a URL carrying any is refused, so that
nothing which records output_dir (the manifest, the report, logs) can hold a secret.
file:// needs no copy: it is the local folder it names.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

MARKER = ".trbench-remote"  # in the working copy's top folder: the URL it stands for
# scheme -> the package fsspec needs for it (s3fs is a dependency of trbench; the others are the user's to add)
BACKENDS = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
            "abfss": "adlfs"}
SCHEMES = "s3://, gs://, az:// or file://"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")

_copies: dict[str, Path] = {}  # URL -> this process's working copy of it
_found: dict[Path, str] = {}  # a working copy's top folder -> its URL (this process's and those it was handed)


class OutputDirError(ValueError):
    """output_dir names a URL trbench cannot write: the message is one line naming the fix."""


def is_url(output_dir: str | Path) -> bool:
    return isinstance(output_dir, str) and bool(_URL.match(output_dir))


def url_problem(url: str) -> str | None:
    """Why trbench cannot use this output_dir URL, with the fix, in one line; None when it can."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            return f"{url}: a file:// URL names an absolute path on this host; fix: file:///abs/path"
        return None
    if scheme not in BACKENDS:
        return f"{url}: the scheme {scheme}:// is not supported; fix: give a local folder or an {SCHEMES} URL"
    if "@" in parts.netloc:
        return (f"{url.split('://')[0]}://...: the URL carries credentials; fix: drop them from the URL and set them "
                "in the environment or a profile (docs/object-storage.md)")
    if not parts.netloc:
        return f"{url}: no bucket named; fix: {scheme}://BUCKET/PREFIX"
    package = BACKENDS[scheme]
    if importlib.util.find_spec(package) is None:
        return f"{url}: {scheme}:// needs the {package} package, which is not installed; fix: pip install {package}"
    return None


def reach_problem(url: str) -> str | None:
    """Why the bucket of a usable URL cannot be seen with the credentials at hand, with the fix, in one line."""
    if (problem := url_problem(url)) is not None or urlsplit(url).scheme.lower() == "file":
        return problem
    bucket = urlsplit(url).netloc
    try:
        fs, _ = filesystem(url)
        if fs.exists(bucket):
            return None
        return (f"{url}: the bucket {bucket!r} does not exist or these credentials cannot see it; fix: create it, "
                "or check the credentials (environment or profile) and the endpoint (AWS_ENDPOINT_URL for s3)")
    except Exception as err:  # noqa: BLE001 - whatever the backend raises, it is said in one line
        return (f"{url}: cannot be reached ({type(err).__name__}: {err}); fix: check the credentials (environment or "
                "profile) and the endpoint (AWS_ENDPOINT_URL for s3)")


def check_url(url: str) -> None:
    if (problem := url_problem(url)) is not None:
        raise OutputDirError(f"output_dir {problem}")


def working_copy(url: str) -> Path:
    """The local folder the pipeline writes the URL's TR folders in: this process's working copy of it (made on
    first use, removed when the process ends), or for file:// the folder it names."""
    url = url.rstrip("/")
    check_url(url)
    if urlsplit(url).scheme.lower() == "file":
        return Path(urlsplit(url).path or "/")
    if url not in _copies:
        top = Path(tempfile.mkdtemp(prefix="trbench-remote-"))
        (top / MARKER).write_text(url, encoding="utf-8")
        atexit.register(shutil.rmtree, top, ignore_errors=True)
        _copies[url] = top
        _found[top] = url
    return _copies[url]


def url_of(path: Path) -> str | None:
    """The URL a path of a working copy stands for; None for a local path."""
    path = Path(path)
    for top, url in _found.items():
        if path.is_relative_to(top):
            return _join(url, path.relative_to(top))
    for top in (path, *path.parents):
        marker = top / MARKER
        if marker.is_file():
            _found[top] = marker.read_text(encoding="utf-8").strip()
            return _join(_found[top], path.relative_to(top))
    return None


def where(path: Path) -> str:
    """How to name a path to a person: its URL when it is a working copy's."""
    return url_of(path) or str(path)


def _join(url: str, rel: Path) -> str:
    return url if rel == Path(".") else f"{url}/{rel.as_posix()}"


# the environment variables the backends read their credentials and endpoint from
_CREDENTIAL_PREFIXES = ("AWS_", "GOOGLE_", "AZURE_")
_filesystems: dict[tuple, AbstractFileSystem] = {}


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The fsspec filesystem of a URL and the path in it: one instance per scheme and credential environment.
    fsspec's own cache keys on the options passed, not on the environment the backend reads, so a process
    whose AWS_ENDPOINT_URL or keys changed would be handed the instance made for the old ones."""
    import fsspec

    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(_CREDENTIAL_PREFIXES)))
    key = (urlsplit(url).scheme.lower(), env)
    fs = _filesystems.get(key)
    if fs is None:
        fs, path = fsspec.core.url_to_fs(url, skip_instance_cache=True)
        _filesystems[key] = fs
        return fs, path
    return fs, fs._strip_protocol(url)


def push(path: Path) -> None:
    """Send a finished local file of a working copy whole, in one request, to where it stands for."""
    url = url_of(path)
    if url is None:
        return
    fs, rpath = filesystem(url)
    fs.pipe_file(rpath, Path(path).read_bytes())


def push_tree(folder: Path) -> None:
    """Every file under a working copy's folder (servers' logs once they are closed)."""
    if url_of(folder) is None or not folder.is_dir():
        return
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        push(path)


def pull(folder: Path) -> None:
    """Make a working copy's folder what the store holds under its URL: files missing here or of another size
    are fetched, files the store no longer holds are removed (a run file whose upload failed is not finished).
    A no-op for a local folder."""
    url = url_of(folder)
    if url is None:
        return
    fs, rpath = filesystem(url)
    rpath = rpath.rstrip("/")
    try:
        listed = fs.find(rpath, detail=True)
    except FileNotFoundError:
        listed = {}
    remote: dict[Path, int] = {}
    for name, info in listed.items():
        if info.get("type", "file") != "file" or not name.startswith(rpath + "/"):
            continue
        path = folder / name[len(rpath) + 1:]
        if not _is_log(folder, path):
            remote[path] = int(info.get("size") or 0)
    for path, size in remote.items():
        if path.is_file() and path.stat().st_size == size and "model_slug=" in path.parent.name:
            continue  # a run file is never rewritten under its name: the copy here is the stored one
        path.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(f"{rpath}/{path.relative_to(folder).as_posix()}", str(path))
    if folder.is_dir():
        for path in folder.rglob("*"):
            if path.is_file() and path not in remote and not path.name.startswith(".") and not _is_log(folder, path):
                path.unlink()


def _is_log(folder: Path, path: Path) -> bool:
    """Logs are this process's own, written as it goes (pushed when closed): a pull neither fetches nor removes one."""
    return "logs" in path.relative_to(folder).parts or folder.name == "logs"
