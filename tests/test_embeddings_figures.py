"""The embeddings workload's figures against hand-computed cases, its spec sub-model, its texts and its
report section (no server)."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from trbench.data.environment import Manifest
from trbench.config.embeddings_section import EmbeddingsLoad, EmbeddingTextsError, load_texts
from trbench.config.errors import format_error
from trbench.data import rows, store
from trbench.measure.embedding_metrics import step_figures
from trbench.report.embeddings_table import embeddings_markdown, embeddings_table


def _req(offset: float, latency: float, status: str = "ok", tokens: int | None = 10, kind: str | None = None,
         n_texts: int = 2) -> dict:
    return {"sent_offset_ms": offset, "latency_ms": latency, "status": status, "prompt_tokens": tokens,
            "error_kind": kind, "n_texts": n_texts}


def test_figures_by_hand():
    reqs = [_req(0, 50, tokens=10), _req(50, 150, tokens=12), _req(200, 10, "error", None, "http_5xx"),
            _req(210, 90, tokens=8)]
    f = step_figures(reqs, slo_ms=100)
    assert (f.n_requests, f.n_ok, f.n_errors, f.error_kinds) == (4, 3, 1, ["http_5xx"])
    assert f.wall_s == pytest.approx(0.3)  # first sent at 0 ms, last answer at 210 + 90 ms
    assert (f.texts_total, f.tokens_total) == (6, 30)
    assert f.texts_per_s == pytest.approx(20.0) and f.tokens_per_s == pytest.approx(100.0)
    # ok latencies 50, 90, 150: linear interpolation between order statistics
    assert f.latency_mean_ms == pytest.approx(96.6667, abs=1e-3)
    assert (f.latency_p50_ms, f.latency_p95_ms, f.latency_p99_ms) == pytest.approx((90.0, 144.0, 148.8))
    # within the SLO: 50 and 90 ms of 4 requests (the error never is)
    assert (f.n_within_slo, f.within_slo_pct, f.slo_ms) == (2, 50.0, 100.0)


def test_figures_without_server_counts_and_with_only_errors():
    f = step_figures([_req(0, 40, tokens=None), _req(40, 40, tokens=5)], slo_ms=100)
    assert f.tokens_total is None and f.tokens_per_s is None  # never a partial count passed off as the total
    assert f.texts_per_s == pytest.approx(4 / 0.08)
    bad = step_figures([_req(0, 5, "error", None, "connect"), _req(5, 5, "error", None, "http_5xx")], slo_ms=100)
    assert (bad.n_ok, bad.texts_per_s, bad.latency_p50_ms, bad.within_slo_pct) == (0, None, None, 0.0)
    assert bad.error_kinds == ["connect", "http_5xx"]


def test_default_slo_is_seed_002s_100_ms_and_bad_fields_are_named():
    load = EmbeddingsLoad()
    assert (load.slo_ms, load.batch_sizes, load.concurrency) == (100.0, [1, 8], 1)
    for data, field in [({"batch_sizes": [0]}, "batch_sizes"), ({"batch_sizes": [4, 4]}, "batch_sizes"),
                        ({"slo_ms": 0}, "slo_ms"), ({"requests": 0}, "requests"), ({"concurency": 2}, "concurency")]:
        with pytest.raises(ValidationError) as err:
            EmbeddingsLoad.model_validate(data)
        msg = format_error(err.value, EmbeddingsLoad, "spec")
        assert f"field '{field}'" in msg and "fix:" in msg and "\n" not in msg


def test_texts_file_and_its_errors(tmp_path):
    texts = load_texts("datasets/embeddings/passages_v1.yaml")
    assert len(texts.texts) >= 8 and texts.digest.startswith("sha256:")
    ids = [t.id for t in texts.batch(1, 3)]
    assert ids == [t.id for t in texts.texts[3:6]]
    assert [t.id for t in texts.batch(len(texts.texts), 1)] == [texts.texts[0].id]  # cycles
    with pytest.raises(EmbeddingTextsError, match="load.embeddings.texts.*not found; fix:"):
        load_texts(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("name: x\ntexts: []\n")
    with pytest.raises(EmbeddingTextsError, match="load.embeddings.texts.*fix:"):
        load_texts(tmp_path / "bad.yaml")


def _step(**kw) -> dict:
    base = dict(tr_id="T", run_id="m_emb_b1_c1_i0", attempt=1, model="m", provider="embedded", backend="openai",
                instance="i0", instance_url="http://x", batch_size=1, concurrency=1,
                started_at=pd.Timestamp("2026-01-01", tz="UTC"), n_warmup=2, texts_name="t", texts_digest="d",
                n_requests=10, n_ok=9, n_errors=1, error_kinds=["http_5xx"], wall_s=1.0, texts_total=9, tokens_total=90,
                texts_per_s=9.0, tokens_per_s=90.0, latency_mean_ms=50.0, latency_p50_ms=48.0, latency_p95_ms=80.0,
                latency_p99_ms=95.5, slo_ms=100.0, n_within_slo=9, within_slo_pct=90.0, manifest_digest="x")
    return rows.EmbeddingStepRow(**{**base, **kw}).model_dump()


def test_report_section_says_what_it_measures_and_keeps_the_latest_attempt():
    steps = pd.DataFrame([_step(batch_size=8, run_id="b8", texts_per_s=40.0), _step(),
                          _step(attempt=2, texts_per_s=11.0)])
    table = embeddings_table(steps)
    assert table.column("batch size") == ["1", "8"]
    assert table.column("texts/s") == ["11.0", "40.0"]  # attempt 2 of the b1 step
    assert table.column("within SLO") == ["90.0% (<= 100 ms)"] * 2
    assert table.column("errors") == ["1 (http_5xx)"] * 2
    md = embeddings_markdown(steps)
    assert "serving path" in md and "not" in md and "quality of the vectors" in md
    assert "| p50 ms | p95 ms | p99 ms | within SLO |" in md
    assert embeddings_markdown(steps.iloc[0:0]) == ""


def test_step_rows_round_trip_through_parquet(tmp_path):
    row = _step()
    req = rows.EmbeddingRequestRow(**{k: row[k] for k in rows.EmbeddingKeys.model_fields}, request_index=0,
                                   is_warmup=False, sent_at=row["started_at"], sent_offset_ms=0.0, status="ok",
                                   latency_ms=12.5, n_texts=1, prompt_tokens=7).model_dump()
    store.write_run(tmp_path, row, [req], Manifest.lenient({"m": 1}), kind="embeddings")
    assert store.finished_run_ids(tmp_path, "embeddings") == {row["run_id"]}
    back = store.read_frame(tmp_path, "emb_steps")
    assert back.loc[0, "latency_p99_ms"] == 95.5 and list(back.columns[:-1]) == store.EMB_STEP_SCHEMA.names
    assert store.read_frame(tmp_path, "emb_requests").loc[0, "prompt_tokens"] == 7
