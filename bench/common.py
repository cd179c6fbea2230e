"""Shared helpers for the benchmark scripts: percentiles, machine facts, result files.

Every benchmark writes ``bench/results/<name>.json`` (numbers, the machine, versions, date,
and targets with whether each was met); ``bench/report.py`` renders them all into
``bench/RESULTS.md``. Run them all with ``make bench``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

if str(PROJECT_ROOT) not in sys.path:  # `python bench/x.py` from anywhere
    sys.path.insert(0, str(PROJECT_ROOT))

VERSIONED_PACKAGES = (
    "llama-cpp-python",
    "onnxruntime",
    "chromadb",
    "chainlit",
    "langchain-core",
    "tiktoken",
)


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) by linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: Iterable[float], digits: int = 3) -> dict[str, float | int | None]:
    """n, p50, p95, mean, max of ``values`` (rounded)."""
    data = list(values)

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, digits)

    return {
        "n": len(data),
        "p50": r(percentile(data, 0.5)),
        "p95": r(percentile(data, 0.95)),
        "mean": r(statistics.fmean(data)) if data else None,
        "max": r(max(data)) if data else None,
    }


def machine() -> dict[str, Any]:
    """What this machine is: CPU model, cores usable, memory, OS, Python, package versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": cpu,
        "cores": cores,
        "memory_gib": memory_gib,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


@dataclass
class Target:
    """A speed target from the issue, and whether the measurement meets it."""

    name: str
    value: float | None
    limit: float
    unit: str = "s"
    higher_is_better: bool = False

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value >= self.limit if self.higher_is_better else self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        op = ">=" if self.higher_is_better else "<="
        return {
            "name": self.name,
            "value": self.value,
            "target": f"{op} {self.limit} {self.unit}".strip(),
            "met": self.met,
        }


@dataclass
class BenchResult:
    """One benchmark's numbers, written to ``bench/results/<name>.json``."""

    name: str
    title: str
    command: str
    metrics: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    machine: dict[str, Any] = field(default_factory=machine)

    def write(self, directory: Path = RESULTS_DIR) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{self.name}.json"
        payload = {
            "name": self.name,
            "title": self.title,
            "command": self.command,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(time.perf_counter() - self.started, 1),
            "machine": self.machine,
            "metrics": self.metrics,
            "targets": [t.to_dict() for t in self.targets],
            "notes": self.notes,
        }
        path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {path}")
        for target in self.targets:
            mark = {True: "met", False: "MISSED", None: "n/a"}[target.met]
            print(f"  target {target.name}: {target.value} ({target.to_dict()['target']}) {mark}")
        return path


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    started = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - started
