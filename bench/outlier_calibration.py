"""False alarms and detection of the outlier rule, on resampled healthy quickstart runs.

For each run count n (default 3, 5, 10) and each rule (the one floor of 5 % on every metric that
trbench used before, and the spec's default: 5 % on decode throughput and speedup, a wider floor on
TTFT), it resamples TRs from real runs (trbench.quality.outlier_calibration: n whole runs per
config, drawn with replacement from that config's measured runs) and prints
  false alarm   the share of healthy configs recommended for a re-run (a flagged run), single-agent,
                multi-agent and all; target: at most 10 % (1 config in 10)
  detection     the share of runs flagged when one run per config is made 20 % slower on decode
                (throughput x 0.8) or 50 % slower on TTFT (TTFT x 1.5): mean over configs x metrics,
                and the lowest config x metric
and, first, the run-to-run noise of the reference per metric family: the median over runs of
|x - config median| / config median.

The runs come from the bundled reference (trbench/quality/outlier_reference.csv: healthy quickstart
TRs) or from TR folders given with --tr (e.g. outputs/quickstart after `trbench run
deployments/quickstart.yaml`); --extract writes those folders' runs as the new reference.

Run: `make bench-outliers` or `python bench/outlier_calibration.py [--tr outputs/quickstart ...]
[--runs 3,5,10] [--draws 4000] [--extract]`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from trbench.config.spec import OutlierRule
from trbench.quality import outlier_calibration, outliers

RULES = {"one 5 % floor (before)": OutlierRule(min_rel_mad=0.05, min_rel_mad_ttft=0.05),
         "default": OutlierRule()}


def noise(reference: pd.DataFrame) -> dict[str, float]:
    """Median |x - config median| / config median over the runs, per metric family."""
    out: dict[str, list[float]] = {}
    for (_, _, metric), group in reference.groupby(["kind", "config", "metric"]):
        values = group["value"].to_numpy(dtype=np.float64)
        med = float(np.median(values))
        if med:
            family = "ttft" if outliers.is_ttft(metric) else "speedup" if metric == "speedup" else "decode"
            out.setdefault(family, []).extend(np.abs(values - med) / abs(med))
    return {family: float(np.median(v)) for family, v in sorted(out.items())}


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
    runs = reference.groupby(["kind", "config"])[["source", "run_index"]].apply(
        lambda g: len(g.drop_duplicates()))
    print(f"reference: {reference['source'].nunique()} TR run(s) ({', '.join(sorted(reference['source'].unique()))}),"
          f" {len(runs)} configs, {runs.min()}-{runs.max()} runs each")
    print("run-to-run noise (median |x - median| / median): "
          + ", ".join(f"{f} {100 * v:.1f} %" for f, v in noise(reference).items()))
    print(f"{'rule':<24} {'runs':>4}  {'false alarm: single':>19} {'multi':>6} {'all':>6}   "
          f"{'detected: decode':>16} {'(min)':>6} {'ttft':>6} {'(min)':>6}")
    for name, rule in RULES.items():
        for n in (int(x) for x in args.runs.split(",")):
            cal = outlier_calibration.calibrate(reference, rule, n, draws=args.draws)
            fa, det, low = cal.false_alarm, cal.detection, cal.detection_min

            def pct(d: dict[str, float], key: str) -> str:
                return f"{100 * d[key]:.1f}" if key in d else "n/a"

            print(f"{name:<24} {n:>4}  {pct(fa, 'single'):>19} {pct(fa, 'multi'):>6} {pct(fa, 'all'):>6}   "
                  f"{pct(det, 'decode'):>16} {pct(low, 'decode'):>6} {pct(det, 'ttft'):>6} {pct(low, 'ttft'):>6}")


if __name__ == "__main__":
    main()
