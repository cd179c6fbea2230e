"""How many trainees one embedded model can serve, and admission beyond that.

:func:`classroom_capacity` answers "how many trainees at a reply p95 of 10 s?" from measured
turn times (``coachbot capacity`` measures them on this machine): it replays a classroom, each
trainee sending a line 15 to 30 s after the previous reply, through one first-come, first-served
model, drawing each turn's service time from the measured ones, and finds the largest class
whose reply p95 (waiting plus service) meets the target. The queueing is simulated; the work per
turn is measured.

:class:`Admission` holds the practice sessions in progress and turns away new ones beyond the
limit, so a class that outgrows the machine is told so instead of every trainee waiting longer.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass

CLASSROOM_THINK_S = (15.0, 30.0)
CLASSROOM_MINUTES = 10.0


@dataclass(frozen=True)
class ClassroomEstimate:
    """Reply times one class size would get."""

    trainees: int
    reply_p50_s: float
    reply_p95_s: float
    utilisation: float


def simulate_classroom(
    trainees: int,
    service_times_s: Sequence[float],
    *,
    think_s: tuple[float, float] = CLASSROOM_THINK_S,
    minutes: float = CLASSROOM_MINUTES,
    runs: int = 20,
    seed: int = 0,
) -> ClassroomEstimate:
    """Reply times for ``trainees`` on one FIFO model whose turns take ``service_times_s``."""
    rng = random.Random(seed)
    replies: list[float] = []
    busy = 0.0
    for _ in range(runs):
        run_replies, run_busy = _one_class(trainees, service_times_s, think_s, minutes * 60, rng)
        replies += run_replies
        busy += run_busy
    replies.sort()
    return ClassroomEstimate(
        trainees=trainees,
        reply_p50_s=round(_quantile(replies, 0.5), 2),
        reply_p95_s=round(_quantile(replies, 0.95), 2),
        utilisation=round(busy / (runs * minutes * 60), 3),
    )


def _one_class(
    trainees: int,
    service_times_s: Sequence[float],
    think_s: tuple[float, float],
    horizon_s: float,
    rng: random.Random,
) -> tuple[list[float], float]:
    arrivals = [(rng.uniform(0, think_s[1]), trainee) for trainee in range(trainees)]
    heapq.heapify(arrivals)
    free_at, busy, replies = 0.0, 0.0, []
    while arrivals:
        sent_at, trainee = heapq.heappop(arrivals)  # the earliest line is served first
        if sent_at > horizon_s:
            break
        service = rng.choice(service_times_s)
        start = max(sent_at, free_at)
        free_at = start + service
        busy += service
        replies.append(free_at - sent_at)
        heapq.heappush(arrivals, (free_at + rng.uniform(*think_s), trainee))
    return replies, busy


def classroom_capacity(
    service_times_s: Sequence[float], reply_p95_target_s: float = 10.0, most: int = 60
) -> tuple[int, list[ClassroomEstimate]]:
    """The largest class meeting the target (0 if even one trainee misses it), and the
    estimate for each size tried."""
    if not service_times_s:
        raise ValueError("no measured turn times")
    estimates: list[ClassroomEstimate] = []
    capacity = 0
    for trainees in range(1, most + 1):
        estimate = simulate_classroom(trainees, service_times_s)
        estimates.append(estimate)
        if estimate.reply_p95_s > reply_p95_target_s:
            break
        capacity = trainees
    return capacity, estimates


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


class Admission:
    """Practice sessions in progress, at most ``limit`` at once (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def admit(self, session: str) -> bool:
        """Count ``session`` in; False when the class is full (a session already in stays
        in)."""
        with self._lock:
            if session in self._active:
                return True
            if self.limit is not None and len(self._active) >= self.limit:
                return False
            self._active.add(session)
            return True

    def leave(self, session: str) -> None:
        with self._lock:
            self._active.discard(session)

    @property
    def active(self) -> int:
        with self._lock:
            return len(self._active)
