"""One TR run end to end, Prefect-free: opening (spec, servers, manifest), the workloads, the closing
step (failure log, flags, report, validation) and its outcome. flows/tr.py runs the same with each
step a Prefect task run; the CLI runs it directly when no Prefect API is configured."""

from trbench import lazy_exports

__all__ = ["Outcome", "run_tr", "load_tr_spec", "closing_step"]
__getattr__ = lazy_exports(__name__, {"Outcome": "outcome", "run_tr": "runner", "load_tr_spec": "opening",
                                      "closing_step": "closing"})
