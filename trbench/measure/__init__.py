"""What is measured and how: per-request metrics and run statistics, telemetry (NVML and host probes,
the sampler), energy and cost, the VRAM estimate and budget, and the environment manifest."""

from trbench import lazy_exports

_WHERE = {
    "derive": "metrics", "summarize": "metrics", "RequestMetrics": "metrics",
    "Sampler": "telemetry", "run_energy": "energy", "estimate_vram": "vram", "budget_decision": "vram",
    "collect": "manifest",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
