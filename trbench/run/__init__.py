"""Running a TR's measurements: the plan (which runs, on which instance, within the VRAM budget),
one single-agent run, one multi-agent run, the preflight checks and the progress events. No Prefect:
tasks/ and flows/ call these."""

from trbench import lazy_exports

_WHERE = {
    "RunPlan": "single", "RunResult": "single", "Gate": "single", "RunCancelled": "single",
    "execute_run": "single", "failed_run": "single",
    "MultiRunPlan": "multi", "AgentSlot": "multi", "execute_multi_run": "multi", "failed_multi_run": "multi",
    "PreflightError": "preflight", "emit": "progress", "ProgressEvent": "progress",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
