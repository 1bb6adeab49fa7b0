"""The VRAM budget: whether a matrix cell runs as asked, runs downgraded (fewer GPU layers or a
smaller context) or is skipped, from its estimate (measure/vram_estimate.py) and the GPUs' free
memory (measure/nvml.gpu_free_mib)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from trbench.measure.nvml import GpuMemory
from trbench.measure.vram_estimate import VramEstimate

MIN_LADDER_CTX = 512


class BudgetDecision(BaseModel):
    """Whether a matrix cell runs as asked, runs downgraded, or is skipped; reason says why."""

    model_config = ConfigDict(frozen=True)

    action: Literal["run", "downgrade", "skip"]
    reason: str
    num_gpu: int | None
    num_ctx: int
    estimate: VramEstimate
    free_mib: float | None = None
    gpu: str | None = None


def default_ladder(estimate: VramEstimate) -> list[tuple[int | None, int]]:
    """Rungs to try when a cell does not fit: fewer GPU layers (3/4, 1/2, 1/4 of the model's)
    at the asked context, then the asked GPU layers at half, quarter... of the context, down to
    512 tokens. Without a layer count only the context rungs remain."""
    rungs: list[tuple[int | None, int]] = []
    n = estimate.block_count
    if n:
        on_gpu = n if estimate.num_gpu is None or estimate.num_gpu < 0 else min(estimate.num_gpu, n)
        for frac in (0.75, 0.5, 0.25):
            g = int(n * frac)
            if 0 < g < on_gpu and (g, estimate.num_ctx) not in rungs:
                rungs.append((g, estimate.num_ctx))
    c = estimate.num_ctx // 2
    while c >= MIN_LADDER_CTX:
        rungs.append((estimate.num_gpu, c))
        c //= 2
    return rungs


def _pick_gpu(free_mib: list[GpuMemory] | float | None, gpu: int | None) -> tuple[float, str] | None:
    if free_mib is None:
        return None
    if isinstance(free_mib, int | float):
        return float(free_mib), "the GPU"
    gpus = [g for g in free_mib if gpu is None or g.index == gpu]
    if not gpus:
        return None
    best = max(gpus, key=lambda g: g.free_mib)
    return best.free_mib, best.label


def _describe(e: VramEstimate) -> str:
    return (f"{e.total_gib:.2f} GiB ({e.total_mib:.0f} MiB: weights {e.weights_gib:.2f} + KV {e.kv_cache_gib:.3g} "
            f"+ overhead {e.overhead_gib:.2f}; num_gpu={e.num_gpu}, num_ctx={e.num_ctx})")


def budget_decision(estimate: VramEstimate, free_mib: list[GpuMemory] | float | None,
                    ladder: list[tuple[int | None, int]] | None = None, gpu: int | None = None) -> BudgetDecision:
    """Run the cell as asked if its estimate fits the free GPU memory; else the first ladder rung
    (num_gpu, num_ctx) that fits ('downgrade'); else 'skip'. The reason names the estimate and the
    free memory. free_mib: gpu_free_mib()'s list (the GPU with most free memory, or index `gpu`,
    is the budget), a number of MiB, or None (no GPU: 'run', budget not checked).
    ladder None: default_ladder(estimate)."""
    picked = _pick_gpu(free_mib, gpu)
    if picked is None:
        return BudgetDecision(action="run", reason="no GPU visible: budget not checked",
                              num_gpu=estimate.num_gpu, num_ctx=estimate.num_ctx, estimate=estimate)
    free, where = picked
    common = {"free_mib": free, "gpu": where}
    if estimate.total_mib <= free:
        return BudgetDecision(action="run", reason=f"estimate {_describe(estimate)} fits in {free:.0f} MiB free on {where}",
                              num_gpu=estimate.num_gpu, num_ctx=estimate.num_ctx, estimate=estimate, **common)
    rungs = default_ladder(estimate) if ladder is None else list(ladder)
    tried: list[VramEstimate] = []
    for g, c in rungs:
        e = estimate.at(g, c)
        tried.append(e)
        if e.total_mib <= free:
            return BudgetDecision(
                action="downgrade", num_gpu=g, num_ctx=c, estimate=e, **common,
                reason=(f"estimate {_describe(estimate)} exceeds {free:.0f} MiB free on {where}; downgraded to "
                        f"num_gpu={g}, num_ctx={c}: estimate {_describe(e)} fits"))
    if tried:
        smallest = min(tried, key=lambda e: e.total_gib)
        rest = f"; none of {len(tried)} ladder rungs fits either (smallest: {_describe(smallest)})"
    else:
        rest = "; no ladder rung to try"
    return BudgetDecision(action="skip", num_gpu=estimate.num_gpu, num_ctx=estimate.num_ctx, estimate=estimate, **common,
                          reason=f"estimate {_describe(estimate)} exceeds {free:.0f} MiB free on {where}{rest}")
