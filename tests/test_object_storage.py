"""output_dir on object storage (trbench/data/remote.py): a TR written to s3:// on a real S3-compatible server
the tests start on loopback (moto's server mode, tests/s3_server.py), with no local folder standing for it but
the process's working copy under the temp dir, removed when the process ends. Every object is put whole in one
request; the run files in the bucket are the resume ledger; report, validation, export and compare read the
bucket; the secret key is in no output. A URL trbench cannot use says so in one line naming output_dir."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from s3_server import BUCKET, S3Server, serve, without_aws
from typer.testing import CliRunner

from trbench.cli import app
from trbench.config.spec import SpecError, parse_spec
from trbench.data import remote, store

ROOT = Path(__file__).resolve().parent.parent
URL = f"s3://{BUCKET}/trs"


# --- unit: the URL rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("ftp://host/trs", "the scheme ftp:// is not supported; fix: give a local folder or an s3://"),
    ("s3://AKIAX:topsecret@bucket/trs", "the URL carries credentials; fix: drop them from the URL"),
    ("s3:///trs", "no bucket named; fix: s3://BUCKET/PREFIX"),
    ("file://relative/trs", "a file:// URL names an absolute path"),
])
def test_a_url_trbench_cannot_use_is_one_line_naming_output_dir(url, words):
    with pytest.raises(SpecError) as err:
        parse_spec({"tr_id": "t", "models": ["m"], "output_dir": url}, "spec x.yaml")
    message = str(err.value)
    assert "output_dir" in message and words in message and "\n" not in message.strip()
    assert "topsecret" not in message


@pytest.mark.skipif(importlib.util.find_spec("gcsfs") is not None, reason="gcsfs is installed here")
def test_a_missing_backend_package_names_it_and_the_fix(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match=r"output_dir.*gs:// needs the gcsfs package, which is not installed; "
                                        r"fix: pip install gcsfs"):
        parse_spec({"tr_id": "t", "models": ["m"], "output_dir": "gs://bucket/trs"}, "spec x.yaml")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["report", "t", "--output-dir", "gs://bucket/trs"])
    assert result.exit_code == 2 and "output_dir gs://bucket/trs: gs:// needs the gcsfs package" in result.output
    assert not (tmp_path / "gs:").exists()


def test_a_url_is_a_working_copy_never_a_local_folder_named_for_the_scheme(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = store.tr_dir("s3://bucket/a/trs", "t1")
    assert not root.is_relative_to(tmp_path) and not (tmp_path / "s3:").exists()
    assert remote.url_of(root / "runs" / "x.parquet") == "s3://bucket/a/trs/t1/runs/x.parquet"
    assert remote.where(tmp_path) == str(tmp_path) and remote.url_of(tmp_path) is None
    assert store.tr_dir("file:///srv/trs", "t1") == Path("/srv/trs/t1")  # file:// is the folder itself


# --- integration: a TR on a real S3-compatible server ----------------------------------------------------------


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    yield from serve(tmp_path_factory)


def _spec(tr_id: str, port: int) -> dict:
    return {"tr_id": tr_id, "provider": "mock", "backend": "openai",
            "server": {"ports": [port], "first_token_ms": 1, "token_ms": 0},
            "models": ["mock:model"], "grid": {"num_ctx": [1024]}, "runs": 3, "requests_per_run": 2,
            "warmup_requests": 0, "max_tokens": 8, "ttft": "cold", "seed": 1,
            "prompts": str(ROOT / "datasets/prompts/single_agent.yaml"), "output_dir": URL}


def _cli(server: S3Server, spec_path: Path, cwd: Path, prefect_api: str | None = None) -> subprocess.CompletedProcess:
    """`trbench run` in its own process, in an empty working directory, its temp dir one the test can look in."""
    env = {k: v for k, v in without_aws().items() if not k.startswith("PREFECT_API")}
    env.update(server.env, PYTHONPATH=str(ROOT), TMPDIR=str(cwd / "tmp"))
    if prefect_api:
        env["PREFECT_API_URL"] = prefect_api
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "trbench.cli", "run", str(spec_path)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _objects(server: S3Server, prefix: str) -> dict[str, dict]:
    return server.filesystem().find(f"{BUCKET}/trs/{prefix}", detail=True)


def _prefect_records(api: str, secret: str) -> str:
    """Every artifact and log Prefect holds, as text (what a Prefect UI user can see)."""
    texts = []
    for what in ("artifacts", "logs"):
        r = httpx.post(f"{api}/{what}/filter", json={"limit": 200}, timeout=30)
        r.raise_for_status()
        texts.append(r.text)
    return "\n".join(texts)


@pytest.mark.integration
def test_a_tr_on_s3_is_whole_objects_resumes_from_the_bucket_and_reads_back(s3_server, prefect_api, tmp_path,
                                                                             free_ports, monkeypatch):
    server = s3_server
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(_spec("mock-s3", free_ports(1)[0])))
    work = tmp_path / "work"
    work.mkdir()

    first = _cli(server, spec_path, work, prefect_api)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"{URL}/mock-s3" in first.stdout  # the CLI names the bucket, not the working copy
    objects = _objects(server, "mock-s3")
    names = {k.removeprefix(f"{BUCKET}/trs/mock-s3/") for k in objects}
    runs = sorted(n for n in names if n.startswith("runs/model_slug="))
    assert len(runs) == 3 and len([n for n in names if n.startswith("requests/model_slug=")]) == 3
    assert {"manifest.json", "validation/validation.json", "report/mock-s3.md", "report/mock-s3.html",
            "report/summary.json", "logs/run.log"} <= names, sorted(names)
    # nothing local stands for the URL: no folder named for the scheme, the working copy gone with the process
    assert not (work / "s3:").exists() and not (ROOT / "s3:").exists()
    assert list((work / "tmp").iterdir()) == []
    # one PUT per object, never a multipart upload whose parts a reader could wait on
    log = server.log.read_text()
    assert "?uploads" not in log and "uploadId=" not in log
    assert log.count(f"PUT /{BUCKET}/trs/mock-s3/{runs[0]} ") == 1

    # an interrupted TR: one run's ledger entry never made it to the bucket (its requests file did)
    lost = runs[1]
    server.filesystem().rm(f"{BUCKET}/trs/mock-s3/{lost}")
    kept = {k: (v["ETag"], v["LastModified"]) for k, v in objects.items() if "runs/model_slug=" in k
            and not k.endswith(lost)}
    second = _cli(server, spec_path, work)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    after = _objects(server, "mock-s3")
    assert f"{BUCKET}/trs/mock-s3/{lost}" in after  # measured again
    # the finished runs were not measured again: their objects are the very same
    assert {k: (after[k]["ETag"], after[k]["LastModified"]) for k in kept} == kept
    assert log.count(f"PUT /{BUCKET}/trs/mock-s3/{runs[0]} ") == server.log.read_text().count(
        f"PUT /{BUCKET}/trs/mock-s3/{runs[0]} ") == 1

    # report, export and compare in this process, reading the bucket through the standard variables only
    for k, v in server.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(work)
    cli = CliRunner()
    report = cli.invoke(app, ["report", "mock-s3", "--output-dir", URL])
    assert report.exit_code == 0, report.output
    assert f"report: {URL}/mock-s3/report/mock-s3.md" in report.output
    md = server.filesystem().cat_file(f"{BUCKET}/trs/mock-s3/report/mock-s3.md").decode()
    assert "3 run" in md or "runs" in md
    appendix = server.filesystem().cat_file(f"{BUCKET}/trs/mock-s3/report/mock-s3-appendix.md").decode()
    assert f"--output-dir {URL}" in appendix  # the reproduce commands name the bucket, not a temp folder
    exported = cli.invoke(app, ["export", "mock-s3", "--output-dir", URL, "--format", "jsonl"])
    assert exported.exit_code == 0 and f"-> {URL}/mock-s3/exports/runs.jsonl" in exported.output, exported.output
    lines = server.filesystem().cat_file(f"{BUCKET}/trs/mock-s3/exports/runs.jsonl").decode().splitlines()
    assert len(lines) == 3 and {json.loads(x)["run_id"] for x in lines} == {Path(r).stem for r in runs}
    compared = cli.invoke(app, ["compare", f"{URL}/mock-s3", "mock-s3", "--output-dir", URL, "--format", "json"])
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout)["matched_cells"] == 1
    validation = json.loads(server.filesystem().cat_file(f"{BUCKET}/trs/mock-s3/validation/validation.json"))
    assert validation  # the checks ran on what the bucket holds

    # the secret key is in no output: no object, no line printed, no local file, no Prefect record
    fs = server.filesystem()
    everything = {k: fs.cat_file(k) for k in fs.find(BUCKET)}
    assert everything and not any(server.secret.encode() in b for b in everything.values())
    # nor the working copy's temp path, which is gone once the process ends (the logs may name it)
    assert [k for k, b in everything.items() if b"trbench-remote-" in b and "/logs/" not in k] == []
    printed = first.stdout + first.stderr + second.stdout + second.stderr + report.output + exported.output
    assert server.secret not in printed + compared.output
    local = [p for p in tmp_path.rglob("*") if p.is_file() and p != spec_path]
    assert not any(server.secret.encode() in p.read_bytes() for p in local)
    prefect_text = _prefect_records(prefect_api, server.secret)
    assert "mock-s3" in prefect_text and server.secret not in prefect_text


@pytest.mark.integration
def test_a_bucket_that_cannot_be_seen_is_one_line_before_anything_runs(s3_server, tmp_path, free_ports):
    spec = _spec("mock-missing", free_ports(1)[0]) | {"output_dir": "s3://no-such-bucket/trs"}
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    result = _cli(s3_server, spec_path, tmp_path)
    printed = result.stdout + result.stderr
    assert result.returncode == 2, printed
    (line,) = printed.strip().splitlines()
    assert "output_dir" in line and "'no-such-bucket' does not exist" in line and "fix: create it" in line
    assert s3_server.secret not in printed and not (tmp_path / "s3:").exists()


def test_a_changed_endpoint_or_key_gets_a_filesystem_of_its_own(monkeypatch):
    """fsspec caches a filesystem by its options, not by the environment its backend reads: a process whose
    AWS_ENDPOINT_URL changed (another S3 server) must not be handed the instance made for the old one."""
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    first, path = remote.filesystem("s3://bucket/a")
    assert remote.filesystem("s3://bucket/b")[0] is first and path == "bucket/a"
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    assert remote.filesystem("s3://bucket/a")[0] is not first
