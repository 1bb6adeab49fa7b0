"""Does `trbench score` give the public WattBot scorer's scores? Side by side, on generated cases
and on real submission files.

The public scorer is KohakuRAG_UI's `scripts/score.py` (github.com/qualiaMachine/KohakuRAG_UI);
its code is not part of trbench: give the path of a copy with --public.

    python bench/score_parity.py --public /tmp/kohaku/score.py --cases 3000
    python bench/score_parity.py --public /tmp/kohaku/score.py --truth train_QA.csv --submissions a.csv b.csv

Each case is a truth CSV and a submission CSV written to a temporary folder; the public scorer
reads them with pandas' defaults as its own command line does (its solution file must carry the
evidence-flag columns Quote, Table, Figure, Math and is_NA, which only feed its diagnostics: empty
ones are added where a truth file lacks them; a submission without an `explanation` column gets
one). trbench reads the same files as `trbench score` does. A case agrees when the overall score is
the same float, every question's four components (value, unit, ref, NA) are the same, and the
components the public scorer prints (3 decimals) are trbench's rounded. A case the public scorer
cannot score (it raises on a cell) has no public figure: it is counted apart, and trbench must
still score it, counting the cell as unreadable. Prints the figures; exit 1 when any case differs.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import random
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pandas as pd
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trbench.suites import qa_csv  # noqa: E402
from trbench.suites.qa_score import QAScore, QuestionScore, Reading, score_answers  # noqa: E402

FLAGS = ("Quote", "Table", "Figure", "Math", "is_NA")
DEEP = "[" * 2500 + "]" * 2500  # 5,000 characters of nesting: past any JSON or literal parser's depth

VALUES = [
    "5", "5.0", "5.004", "5.01", "0", "0.0009", "-5", "1e3", "1000", "1,000", "1 000", "1_000", "about 1000",
    "~5", ">5", "at least 12", "more than 5", "2B", "2000000000", "1.5k", "1500", "5 m", "80-90", "80 to 90",
    "from 80 to 90", "[80,90]", "[80, 90]", "[90, 80]", "85", "91", "True", "yes", "No", "1", "nan", "NaN",
    "NA", "N/A", "n/a", "na", "", " ", "null", "None", "inf", "is_blank", " IS_BLANK ",
    "Unable to answer with confidence based on the provided documents.", "NVIDIA", " nvidia ", "llama cpp",
    "llama  cpp", "5 W", "{a, b}", "{B,a}", "['a','b']", "['b', 'a']", "[a, b]", "[]", "['1.50']", "[1.5]",
    "{[]}", "[{[]}]", DEEP, "{" * 300 + "}" * 300, "9" * 400 + "k", "1" * 400 + "-5", "it's", '"quoted"',
    "line\nbreak", "٥", "[null]", "[true, 1]", "[NaN]", "[1e400]",
]
REFS = [
    "['a']", "['a', 'b']", "['A ', 'b']", '["a"]', "a", "A", "a, b", "is_blank", "IS_BLANK", "[]", "", " ",
    "['is_blank']", "[null]", "['1.50']", "1.50", "[1.50]", "{[]}", "[{[]}]", DEEP, "NA", "nan", "['a','a']",
    "[1e400]", "[NaN]", "[true]", "[\"it's\"]", "['b']", "['c']", "[a]", "[1, [2]]",
]
UNITS = ["W", " w ", "", "is_blank", "NA", "kWh", "nan", "percent"]


class Verdict(BaseModel):
    agree: bool
    public_failed: bool = False  # the public scorer raised: no public figure to compare
    why: str = ""


def load_public(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("public_wattbot_score", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--public {path}: not a Python file; fix: give the path of KohakuRAG_UI's scripts/score.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "score") or not hasattr(module, "row_bits"):
        raise SystemExit(f"--public {path}: no score() and row_bits(); fix: give KohakuRAG_UI's scripts/score.py")
    return module


def public_score(module: ModuleType, truth: Path, sub: Path) -> tuple[float, dict[str, dict], str]:
    """The public scorer's overall score, its per-question bits (by id) and what it printed."""
    solution, submission = pd.read_csv(truth), pd.read_csv(sub)
    for flag in FLAGS:
        if flag not in solution.columns:
            solution[flag] = ""
    if "explanation" not in submission.columns:
        submission["explanation"] = "x"
    bits: dict[str, dict] = {}
    original = module.row_bits

    def recording(sol, sub, *args, **kwargs):
        out = original(sol, sub, *args, **kwargs)
        bits[str(sol.name)] = out
        return out

    module.row_bits = recording
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            overall = module.score(solution, submission)
    finally:
        module.row_bits = original
    return overall, bits, printed.getvalue()


def trbench_score(truth: Path, sub: Path) -> tuple[QAScore, list[QuestionScore]]:
    t = qa_csv.read_answers(truth, "truth", Reading.PUBLIC)
    p = qa_csv.read_answers(sub, "predictions", Reading.PUBLIC)
    qa_csv.check_ids(t, p, sub, Reading.PUBLIC)
    return score_answers(t, p, Reading.PUBLIC)


def compare(module: ModuleType, truth: Path, sub: Path) -> Verdict:
    try:
        ours = trbench_score(truth, sub)
    except qa_csv.ScoreInputError as err:
        ours = None
        refusal = str(err)
    try:
        overall, bits, printed = public_score(module, truth, sub)
    except Exception as err:  # noqa: BLE001 - whatever the public scorer raises is its verdict
        if type(err).__name__ == "ParticipantVisibleError":  # it refuses the files: trbench must too
            return Verdict(agree=ours is None, why=f"public refused ({err}); trbench: "
                           + ("refused" if ours is None else "scored"))
        if ours is None:
            return Verdict(agree=False, public_failed=True, why=f"trbench refused: {refusal}")
        unreadable = ours[0].unreadable
        return Verdict(agree=unreadable > 0, public_failed=True,
                       why=f"public raised {type(err).__name__}; trbench counted {unreadable} unreadable cell(s)")
    if ours is None:
        return Verdict(agree=False, why=f"public scored {overall}; trbench refused: {refusal}")
    result, rows = ours
    if overall != result.overall:
        return Verdict(agree=False, why=f"overall public {overall!r} trbench {result.overall!r}")
    by_id = {r.id: r for r in rows}
    if set(by_id) != set(bits):
        return Verdict(agree=False, why=f"questions scored: public {sorted(bits)} trbench {sorted(by_id)}")
    for qid, b in bits.items():
        r = by_id[qid]
        ours_bits = {"val": r.value == 1.0, "unit": r.unit_match, "ref": r.ref,
                     "na": r.marked_blank if r.na_question else True}
        theirs = {"val": bool(b["val"]), "unit": bool(b["unit"]), "ref": float(b["ref"]), "na": bool(b["na"])}
        if ours_bits != theirs:
            return Verdict(agree=False, why=f"{qid}: public {theirs} trbench {ours_bits}")
    expected = [f"value match  : {result.value_accuracy:.3f}", f"unit match   : {result.unit_match:.3f}",
                f"ref overlap  : {result.ref_overlap:.3f}", f"NA recall    : {result.na_recall:.3f}",
                f"OVERALL SCORE  : {result.overall:.3f}"]
    missing = [e for e in expected if e not in printed]
    if missing:
        return Verdict(agree=False, why=f"printed components differ: expected {missing[0]!r} in {printed!r}")
    return Verdict(agree=True)


def generated_case(rng: random.Random, folder: Path) -> tuple[Path, Path]:
    """A truth and a submission of 1-8 questions whose cells come from the pools above; now and
    then a question without a prediction or a predicted id the truth lacks."""
    n = rng.randint(1, 8)
    truth = pd.DataFrame({"id": [f"q{i}" for i in range(n)],
                          "answer_value": [rng.choice(VALUES) for _ in range(n)],
                          "answer_unit": [rng.choice(UNITS) for _ in range(n)],
                          "ref_id": [rng.choice(REFS) for _ in range(n)]})
    ids = list(truth["id"])
    if n > 1 and rng.random() < 0.15:
        ids.remove(rng.choice(ids))
    if rng.random() < 0.1:
        ids.append("extra")
    sub = pd.DataFrame({"id": ids, "answer_value": [rng.choice(VALUES) for _ in ids],
                        "answer_unit": [rng.choice(UNITS) for _ in ids], "ref_id": [rng.choice(REFS) for _ in ids],
                        "explanation": ["x"] * len(ids)})
    t, s = folder / "truth.csv", folder / "submission.csv"
    truth.to_csv(t, index=False)
    sub.to_csv(s, index=False)
    return t, s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--public", type=Path, help="path of KohakuRAG_UI's scripts/score.py (required)")
    ap.add_argument("--cases", type=int, default=2000, help="generated cases (default 2000)")
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--truth", type=Path, help="a truth CSV to score --submissions against")
    ap.add_argument("--submissions", type=Path, nargs="*", default=[], help="submission CSVs (with --truth)")
    ap.add_argument("--show", type=int, default=5, help="how many differing cases to print")
    args = ap.parse_args()
    if args.public is None:
        print("error: the path of the public scorer is not given; fix: fetch KohakuRAG_UI's scripts/score.py "
              "(github.com/qualiaMachine/KohakuRAG_UI) outside this repository and pass --public PATH", file=sys.stderr)
        return 2
    if not args.public.is_file():
        print(f"error: --public {args.public}: file not found; fix: give the path of KohakuRAG_UI's scripts/score.py",
              file=sys.stderr)
        return 2
    module = load_public(args.public)
    differing = 0
    if args.submissions:
        if args.truth is None:
            print("error: --submissions needs --truth; fix: give the truth CSV they answer", file=sys.stderr)
            return 2
        same = 0
        for sub in args.submissions:
            v = compare(module, args.truth, sub)
            same += v.agree
            print(f"{'same' if v.agree else 'DIFF'}  {sub}{'' if v.agree and not v.why else '  ' + v.why}")
        print(f"submissions: {same} / {len(args.submissions)} identical")
        differing += len(args.submissions) - same
    if args.cases:
        rng = random.Random(args.seed)
        same = failed_public = 0
        shown = 0
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(args.cases):
                v = compare(module, *generated_case(rng, Path(tmp)))
                same += v.agree
                failed_public += v.public_failed
                if not v.agree and shown < args.show:
                    shown += 1
                    print(f"case {i}: {v.why[:400]}")
        print(f"generated: {same} / {args.cases} identical (seed {args.seed}); of them {failed_public} the public "
              "scorer cannot score (it raises on a cell), which trbench scores with the cell counted unreadable")
        differing += args.cases - same
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
