"""When the requests of a load step are due: seeded, so the same spec sends at the same offsets.

Open loop: the gaps between arrivals are gamma distributed with mean 1/rate and shape `burstiness`
(1: exponential, i.e. Poisson arrivals; below 1 burstier; above 1 more even). A ramp-up raises the
rate linearly from 0 to its value over ramp_up_s: arrivals are drawn at unit rate in the cumulative
intensity Lambda(t) = integral of rate(t) and mapped back through Lambda's inverse.
Closed loop: the streams start evenly spread over the ramp-up.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def arrival_offsets(rate: float, burstiness: float = 1.0, seed: int = 0, ramp_up_s: float = 0.0) -> Iterator[float]:
    """Seconds after the step starts at which each request arrives, endless and increasing."""
    rng = np.random.default_rng(seed)
    shape = burstiness
    s = 0.0  # cumulative intensity: expected arrivals so far
    while True:
        s += float(rng.gamma(shape, 1.0 / shape))  # mean 1 in intensity units
        yield _invert_intensity(s, rate, ramp_up_s)


def _invert_intensity(s: float, rate: float, ramp_up_s: float) -> float:
    """t with Lambda(t) = s, where rate(t) = rate x min(1, t / ramp_up_s)."""
    if ramp_up_s <= 0:
        return s / rate
    ramp_arrivals = rate * ramp_up_s / 2.0  # Lambda(ramp_up_s)
    if s <= ramp_arrivals:
        return math.sqrt(2.0 * s * ramp_up_s / rate)
    return ramp_up_s + (s - ramp_arrivals) / rate


def stream_starts(streams: int, ramp_up_s: float = 0.0) -> list[float]:
    """Seconds after the step starts at which each closed-loop stream sends its first request."""
    return [k * ramp_up_s / streams for k in range(streams)]
