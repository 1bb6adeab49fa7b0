"""False alarms and detection of the outlier rule, on resampled healthy quickstart runs.

For each run count n (default 3, 5, 10) and each rule (the one floor of 5 % on every metric that
trbench used before, and the spec's default: 5 % on decode throughput and speedup, a wider floor on
TTFT), it resamples TRs from real runs (trbench.measure.outlier_calibration: n whole runs per
config, drawn with replacement from that config's measured runs) and prints
  false alarm   the share of healthy configs recommended for a re-run (a flagged run), single-agent,
                multi-agent and all; target: at most 10 % (1 config in 10)
  detection     the share of runs flagged when one run per config is made 20 % slower on decode
                (throughput x 0.8) or 50 % slower on TTFT (TTFT x 1.5): mean over configs x metrics,
                and the lowest config x metric
and, first, the run-to-run noise of the reference per metric family: the median over runs of
|x - config median| / config median.

The runs come from the bundled reference (trbench/measure/outlier_reference.csv: healthy quickstart
TRs) or from TR folders given with --tr (e.g. outputs/quickstart after `trbench run
deployments/quickstart.yaml`); --extract writes those folders' runs as the new reference.

Run: `make bench-outliers` or `python bench/outlier_calibration.py [--tr outputs/quickstart ...]
[--runs 3,5,10] [--draws 4000] [--extract]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from trbench.config.spec import OutlierRule
from trbench.measure import outlier_calibration

SYNTHETIC = [(0.02, 0.05), (0.03, 0.08), (0.05, 0.10)]  # (decode CV, TTFT CV): a quiet machine to a busy one
RULES = {"one 5 % floor (before)": OutlierRule(min_rel_mad=0.05, min_rel_mad_ttft=0.05, min_rel_mad_concurrent=0.05),
         "default": OutlierRule()}


def table(reference: pd.DataFrame, run_counts: list[int], draws: int) -> None:
    print(f"  {'rule':<24} {'runs':>4}  {'false alarm %: single':>21} {'multi':>6} {'all':>6}   "
          f"{'detected %: decode':>18} {'(min)':>6} {'ttft':>6} {'(min)':>6}")
    for name, rule in RULES.items():
        for n in run_counts:
            cal = outlier_calibration.calibrate(reference, rule, n, draws=draws)
            fa, det, low = cal.false_alarm, cal.detection, cal.detection_min

            def pct(d: dict[str, float], key: str) -> str:
                return f"{100 * d[key]:.1f}" if key in d else "n/a"

            print(f"  {name:<24} {n:>4}  {pct(fa, 'single'):>21} {pct(fa, 'multi'):>6} {pct(fa, 'all'):>6}   "
                  f"{pct(det, 'decode'):>18} {pct(low, 'decode'):>6} {pct(det, 'ttft'):>6} {pct(low, 'ttft'):>6}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tr", action="append", type=Path, default=[], help="a TR folder to take runs from (repeat)")
    ap.add_argument("--runs", default="3,5,10", help="comma-separated run counts per config")
    ap.add_argument("--draws", type=int, default=4000, help="resampled TRs per run count")
    ap.add_argument("--extract", action="store_true", help="write the --tr runs as the bundled reference")
    args = ap.parse_args(argv)

    if args.tr:
        reference = outlier_calibration.extract(args.tr)
        if args.extract:
            reference.to_csv(outlier_calibration.REFERENCE, index=False, float_format="%.6g")
            print(f"wrote {len(reference)} rows to {outlier_calibration.REFERENCE}")
    else:
        reference = outlier_calibration.load_reference()
    runs = reference.groupby(["source", "kind", "config"])["run_index"].nunique()
    run_counts = [int(x) for x in args.runs.split(",")]
    cvs = ", ".join(f"{f} {100 * v:.1f} %" for f, v in outlier_calibration.noise(reference).items())
    print(f"reference: {reference['source'].nunique()} TR run(s) ({', '.join(sorted(reference['source'].unique()))}),"
          f" {len(runs)} TR x configs, {runs.min()}-{runs.max()} runs each; run-to-run noise (median CV over "
          f"configs): {cvs}")
    table(reference, run_counts, args.draws)
    for decode_cv, ttft_cv in SYNTHETIC:
        print(f"synthetic: normal noise, CV decode and speedup {100 * decode_cv:g} %, TTFT {100 * ttft_cv:g} %")
        table(outlier_calibration.synthetic(decode_cv, ttft_cv), run_counts, args.draws)


if __name__ == "__main__":
    main()
