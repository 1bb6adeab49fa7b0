"""The report's quality section from its parts: the quality-vs-speed frontier and the key-finding
sentences, on hand-made figures (the flow tests build it from real rows)."""

from __future__ import annotations

from types import SimpleNamespace

from trbench.report.findings import quality_findings
from trbench.report.answer_quality import MOCK_NOTE, QualityPoint, SuitesSection, frontier


def pts(*triples):
    return [QualityPoint(model=m, overall=o, decode_tps_p50=t) for m, o, t in triples]


def test_frontier_is_pareto():
    marked = frontier(pts(("fast", 0.2, 100), ("good", 0.6, 40), ("worse", 0.1, 90), ("slow-equal", 0.2, 50)))
    assert [p.model for p in marked if p.on_frontier] == ["fast", "good"]
    # equal quality: the faster one wins alone; the same point twice: both stay
    assert [p.on_frontier for p in frontier(pts(("a", 0.0, 140), ("b", 0.0, 47)))] == [True, False]
    assert [p.on_frontier for p in frontier(pts(("a", 0.5, 10), ("b", 0.5, 10)))] == [True, True]


def scen(model, parse, valid, routed):
    return {"model": model, "scenario": "router", "json_mode": True, "json_parse_rate": parse,
            "schema_valid_rate": valid, "route_accuracy": routed}


def qa(model, overall, kind="model"):
    return {"model": model, "kind": kind, "overall": overall, "value_accuracy": overall, "ref_overlap": 0.5,
            "na_recall": 1.0, "questions": 4}


def test_quality_findings_say_what_was_measured_and_name_a_best_only_when_there_is_one():
    su = SuitesSection(scenarios=[scen("a", 1.0, 0.5, 0.25), scen("b", 0.5, 0.5, 0.5)],
                       qa=[qa("a", 0.25), qa("b", 0.75), qa("ensemble(a,b)", 0.5, "ensemble")],
                       points=frontier(pts(("a", 0.25, 100), ("b", 0.75, 40))))
    scen_line, qa_line = quality_findings(SimpleNamespace(suites=su, mock=False))
    assert "a 100 % JSON / 50 % valid / 25 % routed right" in scen_line and "(best: b)" in scen_line
    assert "b 0.750" in qa_line and "ensemble(a,b) 0.500" in qa_line and "Even the best" not in qa_line
    assert "decodes faster): a (0.250 at 100.0 tok/s) and b (0.750 at 40.0 tok/s)." in qa_line
    tied = SuitesSection(scenarios=[scen("a", 0.0, 0.0, 0.0), scen("b", 0.0, 0.0, 0.0)],
                         qa=[qa("a", 0.0), qa("b", 0.0)], points=[])
    lines = quality_findings(SimpleNamespace(suites=tied, mock=True))
    assert lines[0] == MOCK_NOTE and "best" not in lines[1] and "No model answered any question right" in lines[2]
