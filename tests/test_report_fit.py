"""Tables that fit the page: the first screen answers with one compact table (one row per model x
config, at most 8 columns), and no table of the report is wider than MAX_COLUMNS: a wide one is
printed as parts that repeat its key columns, each column in exactly one part, nothing lost.
Planted TRs with several models x configs, multi-agent, load and embeddings steps; no browser
(tests/test_report_browser.py opens the same report at 1,200 px and prints it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_load_report import SPEC as LOAD_SPEC
from tests.test_load_report import _write_tr
from tests.test_report_publish import CONFIGS, FAST, SLOW, md_table_after, md_tables, plant
from tests.test_report_shapes import _embedding_steps
from trbench.config.spec import parse_spec
from trbench.report import build_report, publish
from trbench.report.load_tables import load_tables
from trbench.report.tables import MAX_COLUMNS, WIN_MARK, Table, _cols, tables

LONG = "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M"  # a long model name: it must wrap, not widen
MODELS = {"fast-model": FAST, "slow-model": SLOW, LONG: {**SLOW, "tps": 35.0}}


def plant_everything(root: Path) -> Path:
    """A TR with three models x two configs single-agent, multi-agent, load and embeddings steps."""
    plant(root, MODELS, multi={"fast-model": 80.0, "slow-model": 55.0})
    _write_tr(root, parse_spec({**LOAD_SPEC, "tr_id": root.name}))
    _embedding_steps(root, root.name)
    return root


@pytest.fixture(scope="module")
def everything(tmp_path_factory):
    root = plant_everything(tmp_path_factory.mktemp("fit") / "planted")
    return root, publish(root)


def test_the_glance_table_is_compact_with_one_row_per_model_and_config(everything) -> None:
    root, files = everything
    md = files.markdown.read_text()
    data = files.data
    glance = tables(data)["headline"]
    assert len(glance.columns) <= 8
    assert [(r[0], r[1]) for r in glance.rows] == [(c.model, c.config.label) for c in data.cells]
    assert len(glance.rows) == len(MODELS) * len(CONFIGS)
    # right under the key findings, before the Objective; its figures are the full table's
    assert md.index("## Key findings") < md.index("### Results at a glance") < md.index("## Objective")
    rows = md_table_after(md, "### Results at a glance")
    appendix = files.appendix_markdown.read_text()  # the full table is the appendix's
    full = {(r["model"], r["config"]): r for r in md_table_after(appendix, "## Single-agent tables")}
    assert len(rows) == len(full) == len(MODELS) * len(CONFIGS)
    for row in rows:
        cell = full[(row["model"], row["config"])]
        # a winning median carries the winner mark after its interval
        assert row["decode tok/s p50 [95% CI]"].removesuffix(f" {WIN_MARK}") == (
            f"{cell['decode tok/s p50']} {cell['decode tok/s p50 95% CI']}")
        assert row["e2e p50 ms [95% CI]"].removesuffix(f" {WIN_MARK}") == f"{cell['e2e p50 ms']} {cell['e2e p50 95% CI']}"
        assert row["TTFT p50 ms (cold)"].removesuffix(f" {WIN_MARK}") == cell["TTFT cold p50 ms"]
        assert (row["n"], row["valid runs / runs"]) == (cell["n"], cell["valid runs / runs"])


def test_no_markdown_table_is_wider_than_the_page(everything) -> None:
    files = everything[1]
    found = md_tables(files.markdown.read_text()) + md_tables(files.appendix_markdown.read_text())
    assert len(found) > 20
    widths = [len(t[0]) for t in found]
    assert max(widths) <= MAX_COLUMNS, [t[0] for t in found if len(t[0]) > MAX_COLUMNS]


def test_a_planted_report_with_energy_has_no_wide_table_either(tmp_path) -> None:
    root = plant(tmp_path / "two", {"fast-model": FAST, "slow-model": SLOW}, energy=True)
    files = publish(root)
    for md in (files.markdown.read_text(), files.appendix_markdown.read_text()):
        assert max(len(t[0]) for t in md_tables(md)) <= MAX_COLUMNS


def test_every_column_of_a_wide_table_is_in_exactly_one_part(everything) -> None:
    data = build_report(everything[0])
    wide = {name: t for name, t in {**tables(data), **load_tables(data)}.items() if len(t.columns) > MAX_COLUMNS}
    assert {"results", "load_steps", "ma_agents", "load_embeddings"} <= set(wide)
    for name, table in wide.items():
        parts = table.parts()
        assert len(parts) > 1 and all(title for title, _ in parts), name
        keys = [c.header for c in table.columns[:table.keys]]
        seen: list[str] = []
        for _, part in parts:
            headers = [c.header for c in part.columns]
            assert headers[:table.keys] == keys and len(headers) <= MAX_COLUMNS, (name, headers)
            assert len(part.rows) == len(table.rows)
            seen += headers[table.keys:]
            for whole_row, row in zip(table.rows, part.rows):  # every value is the whole table's
                assert row == [whole_row[[c.header for c in table.columns].index(h)] for h in headers]
        assert sorted(seen) == sorted(c.header for c in table.columns[table.keys:]), name


def test_a_table_without_groups_is_cut_in_order_and_a_narrow_one_stays_whole() -> None:
    wide = Table(columns=_cols("model", "config", *[f">c{i}" for i in range(20)]),
                 rows=[["m", "k", *[str(i) for i in range(20)]]])
    parts = wide.parts()
    assert [t for t, _ in parts] == ["part 1 of 3", "part 2 of 3", "part 3 of 3"]
    assert [len(p.columns) for _, p in parts] == [10, 10, 6]
    assert [v for _, p in parts for v in p.rows[0][2:]] == [str(i) for i in range(20)]
    narrow = Table(columns=_cols("a", "b"), rows=[["1", "2"]])
    assert narrow.parts() == [("", narrow)]
