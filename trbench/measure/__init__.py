"""What is measured and how: per-request metrics and run statistics (metrics), telemetry (the GPU
probe nvml, the host probe host, the threaded sampler), energy and cost (energy), the VRAM
estimate and budget (vram_estimate, vram_budget, both named by vram), and the environment manifest."""

from trbench import lazy_exports

_WHERE = {
    "derive": "metrics", "summarize": "metrics", "RequestMetrics": "metrics",
    "Sampler": "sampler", "MEASURED_PHASES": "sampler", "server_pids": "host", "HostProbe": "host",
    "nvml_session": "nvml", "gpu_free_mib": "nvml", "run_energy": "energy",
    "estimate_vram": "vram_estimate", "VramEstimate": "vram_estimate", "budget_decision": "vram_budget",
    "BudgetDecision": "vram_budget", "collect": "manifest",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
