"""Validation of one TR's files after its run, the rendered report included: Great Expectations
suites over the run files, written as validation.json (checks as plain data in checks, the
projected reads and derived frames in frames, the GX driver in gx, validate_tr in validate). It
sits above the report, whose section headings it checks the rendered Markdown for."""

from trbench import lazy_exports

_WHERE = {
    "validate_tr": "validate", "expected_runs_for": "validate", "ValidationResult": "validate",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
