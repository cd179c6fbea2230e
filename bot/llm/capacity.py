"""How many trainees one embedded model can serve, and admission beyond that.

:func:`classroom_capacity` answers "how many trainees at a reply p95 of 10 s?" from measured
turn times (``coachbot capacity`` measures them on this machine, for each number of model
attempts a line may take): it replays a classroom, each trainee sending a line 15 to 30 s after
the previous reply, through one first-come, first-served model, gives each turn the attempts the
app would (one fewer per turn waiting behind it), draws its service time from the ones measured
for that budget (a line that waited out the retry window in the queue gets the trainer's line
at once, as in the app), and finds the largest class whose reply p95 (waiting plus service)
meets the target. The queueing is simulated; the work per turn is measured.

:class:`Admission` holds the practice sessions in progress and turns away new ones beyond the
limit, so a class that outgrows the machine is told so instead of every trainee waiting longer.
"""

from __future__ import annotations

import heapq
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

CLASSROOM_THINK_S = (15.0, 30.0)
CLASSROOM_MINUTES = 10.0
FULL_BUDGET = 3  # model attempts a customer line may take when nobody waits
# A class where more lines than this get the trainer's line at once (no model time left for
# them) is too big, however quick its replies: the customer would stop adapting to the trainee.
MAX_TRAINER_LINE_SHARE = 0.25

# Measured turn seconds by the model attempts a line was allowed (the service gives one less
# per turn waiting behind it, down to 0: the trainer-written line at once).
TurnTimes = Mapping[int, Sequence[float]]


def budget_when(waiting: int) -> int:
    """The attempts a line gets with ``waiting`` turns queued behind it."""
    return max(0, FULL_BUDGET - waiting)


def _times_for(turn_times: TurnTimes, budget: int) -> Sequence[float]:
    """The measured times for ``budget``, or for the nearest larger budget measured."""
    measured = sorted(b for b, times in turn_times.items() if times)
    if not measured:
        raise ValueError("no measured turn times")
    larger = [b for b in measured if b >= budget]
    return turn_times[larger[0] if larger else measured[-1]]


@dataclass(frozen=True)
class ClassroomEstimate:
    """Reply times one class size would get."""

    trainees: int
    reply_p50_s: float
    reply_p95_s: float
    utilisation: float
    trainer_line_share: float  # lines given the trainer-written line at once (model too busy)


def simulate_classroom(
    trainees: int,
    turn_times: TurnTimes,
    *,
    think_s: tuple[float, float] = CLASSROOM_THINK_S,
    minutes: float = CLASSROOM_MINUTES,
    runs: int = 20,
    seed: int = 0,
    retry_window_s: float | None = None,
) -> ClassroomEstimate:
    """Reply times for ``trainees`` on one FIFO model whose turns take ``turn_times``."""
    rng = random.Random(seed)
    replies: list[float] = []
    busy, at_once = 0.0, 0
    for _ in range(runs):
        shape = _ClassShape(think_s, minutes * 60, retry_window_s)
        run = _one_class(trainees, turn_times, shape, rng)
        replies += run.replies
        busy += run.busy
        at_once += run.trainer_lines
    replies.sort()
    return ClassroomEstimate(
        trainees=trainees,
        reply_p50_s=round(_quantile(replies, 0.5), 2),
        reply_p95_s=round(_quantile(replies, 0.95), 2),
        utilisation=round(busy / (runs * minutes * 60), 3),
        trainer_line_share=round(at_once / max(1, len(replies)), 3),
    )


@dataclass
class _Run:
    replies: list[float]
    busy: float = 0.0
    trainer_lines: int = 0


class _ClassShape(NamedTuple):
    """How one simulated class runs: each trainee's think time between a reply and their next
    line (a range), how long the class lasts, and the app's retry window (None: none)."""

    think_s: tuple[float, float]
    horizon_s: float
    retry_window_s: float | None


def _one_class(
    trainees: int, turn_times: TurnTimes, shape: _ClassShape, rng: random.Random
) -> _Run:
    """One class of ``trainees`` on one FIFO model."""
    think_s, horizon_s, window = shape
    arrivals = [(rng.uniform(0, think_s[1]), trainee) for trainee in range(trainees)]
    heapq.heapify(arrivals)
    free_at, run = 0.0, _Run(replies=[])
    while arrivals:
        sent_at, trainee = heapq.heappop(arrivals)  # the earliest line is served first
        if sent_at > horizon_s:
            break
        start = max(sent_at, free_at)
        waited_out = window is not None and start - sent_at > window
        budget = 0 if waited_out else budget_when(sum(1 for at, _ in arrivals if at <= start))
        service = rng.choice(_times_for(turn_times, budget))
        free_at = start + service
        run.busy += service
        run.trainer_lines += budget == 0
        run.replies.append(free_at - sent_at)
        heapq.heappush(arrivals, (free_at + rng.uniform(*think_s), trainee))
    return run


def classroom_capacity(
    turn_times: TurnTimes,
    reply_p95_target_s: float = 10.0,
    most: int = 60,
    max_trainer_line_share: float = MAX_TRAINER_LINE_SHARE,
    retry_window_s: float | None = None,
) -> tuple[int, list[ClassroomEstimate]]:
    """The largest class whose reply p95 meets the target with at most
    ``max_trainer_line_share`` of its lines given the trainer's line for want of time (0 if
    even one trainee misses it), and the estimate for each size tried."""
    _times_for(turn_times, FULL_BUDGET)  # raises when nothing was measured
    estimates: list[ClassroomEstimate] = []
    capacity = 0
    for trainees in range(1, most + 1):
        estimate = simulate_classroom(trainees, turn_times, retry_window_s=retry_window_s)
        estimates.append(estimate)
        too_busy = estimate.trainer_line_share > max_trainer_line_share
        if estimate.reply_p95_s > reply_p95_target_s or too_busy:
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
