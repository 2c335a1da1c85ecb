"""Pure: the ratio of two paths measured in alternating rounds, with a bootstrap confidence interval.

On a shared 2-vCPU machine one iperf3 run of the same path varies by 10-15 %, far more than the
5 % a target leaves, so one ratio of medians can land on either side of it by chance. Rounds are
paired (each Shoal run sits next to its hand-built twin, so drift lands on both), and the verdict
comes from the interval, not from the point: a target is met only when even the low end of the 95 %
interval reaches it.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

RESAMPLES = 4000


@dataclass(frozen=True)
class Ratio:
    """Median of the rounds' paired ratios, and the 95 % percentile-bootstrap interval around it."""

    point: float
    low: float
    high: float
    rounds: int

    def verdict(self, target: float) -> str:
        """For an at-least target: met, not met, or inconclusive (the interval straddles it)."""
        if self.low >= target:
            return "met"
        if self.high < target:
            return "not met"
        return "inconclusive: run more rounds"

    def text(self) -> str:
        return f"{self.point:.3f} [95% CI {self.low:.3f}-{self.high:.3f}, {self.rounds} rounds]"


def paired_ratio(num: Sequence[float], den: Sequence[float], seed: int = 0) -> Ratio:
    """The ratio num/den from per-round pairs. Medians of log ratios, so that a ratio and its
    inverse get the same treatment; the seed makes the interval reproducible for the same data."""
    if len(num) != len(den) or not num:
        raise ValueError(f"need equal, non-empty series of rounds, got {len(num)} and {len(den)}")
    if min(*num, *den) <= 0:
        raise ValueError("every measurement must be positive")
    logs = [math.log(a / b) for a, b in zip(num, den, strict=True)]
    rng = random.Random(seed)
    boots = sorted(statistics.median(rng.choices(logs, k=len(logs))) for _ in range(RESAMPLES))
    low, high = boots[int(0.025 * RESAMPLES)], boots[int(0.975 * RESAMPLES) - 1]
    return Ratio(math.exp(statistics.median(logs)), math.exp(low), math.exp(high), len(logs))
