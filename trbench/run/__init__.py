"""Running a TR's measurements: the plan (which runs, on which instance, within the VRAM budget,
down the OOM ladder, what a resume still needs), one single-agent run (given the small settings
object it reads of the spec: settings.py), one multi-agent run, the checks of a spec against files
and the machine before anything starts (spec_checks), the preflight checks and the progress
events. No Prefect: tasks/ and flows/ call these."""

from trbench import lazy_exports

_WHERE = {
    "RunPlan": "single", "RunResult": "single", "Gate": "single", "RunCancelled": "single",
    "execute_run": "single", "failed_run": "single", "RunSettings": "settings",
    "MultiRunPlan": "multi", "AgentSlot": "multi", "execute_multi_run": "multi", "failed_multi_run": "multi",
    "plan_runs": "plan", "apply_budget": "plan", "plan_multi_runs": "plan", "Lane": "plan",
    "plan_lanes": "plan", "fallback_plan": "plan", "oom_decision": "plan", "attempt_plans": "plan",
    "PreflightError": "preflight", "emit": "progress", "ProgressEvent": "progress",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
