"""The scaling decision: how many replicas a model should have, from the demand observed over time.

A small version of Knative's KPA, which KServe uses:
- each tick the runtime feeds the model's total demand (average concurrency or requests per second,
  summed over its replicas) and gets the desired replica count back;
- the demand is averaged over a short window (`window`, like KPA's panic window) and turned into
  `ceil(demand / target)`: a burst scales up at the next tick;
- scaling down takes the highest recommendation of the last `scale_down_delay` seconds, so the count
  drops only after demand stayed lower for that long;
- with `min_replicas == 0`, the count goes to zero after `scale_to_zero_after` seconds without any
  request; otherwise it never goes below max(min_replicas, 1).

No I/O and no clock of its own: time comes in as an argument, so that it is tested without sleeping.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Bounds:
    """The user's scaling settings for one model."""

    min_replicas: int
    max_replicas: int
    target: float

    @property
    def ceiling(self) -> int:
        # A model always may run one replica, whatever maxReplicas says (KServe treats 0 as "no limit").
        return max(self.max_replicas, self.min_replicas, 1)

    @property
    def floor(self) -> int:
        return max(self.min_replicas, 1)


class Autoscaler:
    """The scaling state of one model. Feed it `recommend(...)` once per tick."""

    def __init__(self, *, scale_down_delay: float, scale_to_zero_after: float, window: float = 2.0) -> None:
        self.scale_down_delay = scale_down_delay
        self.scale_to_zero_after = scale_to_zero_after
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()
        self._recommendations: deque[tuple[float, int]] = deque()

    def reset(self) -> None:
        """Forget the demand history (after a scale to zero, the old demand means nothing)."""
        self._samples.clear()
        self._recommendations.clear()

    def demand(self) -> float:
        """The demand averaged over the window (0 before the first sample)."""
        if not self._samples:
            return 0.0
        return sum(v for _, v in self._samples) / len(self._samples)

    def recommend(self, now: float, demand: float, bounds: Bounds, last_request_at: float | None) -> int:
        """The desired replica count at time `now`, given the model's total `demand` measured over the
        last tick, and when it last saw a request (None: never)."""
        self._samples.append((now, max(demand, 0.0)))
        while self._samples and self._samples[0][0] <= now - self.window:
            self._samples.popleft()
        target = bounds.target if bounds.target > 0 else 1.0
        # The small epsilon keeps float noise (e.g. 2.0000000001 / 1) from adding a whole replica.
        raw = math.ceil(self.demand() / target - 1e-9)
        self._recommendations.append((now, raw))
        while self._recommendations and self._recommendations[0][0] <= now - self.scale_down_delay:
            self._recommendations.popleft()
        wanted = max(r for _, r in self._recommendations)

        idle_for = math.inf if last_request_at is None else now - last_request_at
        if bounds.min_replicas == 0 and idle_for >= self.scale_to_zero_after:
            return 0
        return min(max(wanted, bounds.floor), bounds.ceiling)
