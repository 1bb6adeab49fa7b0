"""Data quality after a TR run: outliers (MAD flags per config, the configs to run again),
regression (two built reports compared cell by cell against a threshold) and validation (Great
Expectations suites over the run files, written as validation.json: checks as plain data in checks,
the projected reads and derived frames in frames, the GX driver in gx)."""

from trbench import lazy_exports

_WHERE = {
    "flag_outliers": "outliers", "write_flags": "outliers", "read_flags": "outliers",
    "flagged_configs": "outliers",
    "compare": "regression", "summary_message": "regression", "RegressionResult": "regression",
    "DEFAULT_THRESHOLD_PCT": "regression", "EXIT_REGRESSION": "regression",
    "validate_tr": "validation", "expected_runs_for": "validation", "ValidationResult": "validation",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
