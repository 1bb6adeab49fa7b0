"""What is measured and how: per-request metrics and run statistics (metrics), telemetry (the GPU
probe nvml, the host probe host, the threaded sampler), energy and cost (energy), the VRAM
estimate and budget (vram_estimate, vram_budget, both named by vram), the environment manifest, and
the run statistics that say which runs to measure again: MAD outlier flags per config (outliers) and
how often that rule flags a healthy run (outlier_calibration), and one statistic of a figure as a
workload's own report section hands it to the summary records (figure)."""

from trbench import lazy_exports

_WHERE = {
    "derive": "metrics", "summarize": "metrics", "RequestMetrics": "metrics",
    "Sampler": "sampler", "MEASURED_PHASES": "sampler", "server_pids": "host", "HostProbe": "host",
    "nvml_session": "nvml", "gpu_free_mib": "nvml", "run_energy": "energy",
    "estimate_vram": "vram_estimate", "VramEstimate": "vram_estimate", "budget_decision": "vram_budget",
    "BudgetDecision": "vram_budget", "collect": "manifest",
    "flag_outliers": "outliers", "write_flags": "outliers", "read_flags": "outliers", "flagged_configs": "outliers", "FlaggedConfig": "outliers",
}
__all__ = list(_WHERE)
__getattr__ = lazy_exports(__name__, _WHERE)
