"""`coachbot doctor`: check every component and say how to fix each failure."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from bot.config import Settings
from bot.errors import CoachbotError
from bot.llm.local_model import MODELS, locate_model


@dataclass
class Check:
    name: str
    status: str  # "ok" | "fail" | "warn" | "skip"
    detail: str
    fix: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# Runs in a child process so that a crash inside llama.cpp (e.g. an unsupported instruction)
# is reported instead of killing the doctor.
_PROBE = """
import sys, time
from llama_cpp import Llama
t = time.perf_counter()
llm = Llama(model_path=sys.argv[1], n_ctx=512, verbose=False)
load = time.perf_counter() - t
out = llm.create_completion("Hello", max_tokens=4, temperature=0)
print(f"{load:.2f}")
"""


def _timed(name: str, fn: Callable[[], Check]) -> Check:
    started = time.perf_counter()
    try:
        check = fn()
    except CoachbotError as exc:
        check = Check(name, "fail", str(exc.args[0] if exc.args else exc), exc.hint)
    except Exception as exc:  # a doctor reports, it never crashes
        check = Check(name, "fail", f"{type(exc).__name__}: {exc}", None)
    check.seconds = round(time.perf_counter() - started, 3)
    return check


def check_model_packages(settings: Settings) -> Check:
    spec = MODELS.get(settings.local_model)
    if spec is None:
        return Check("model packages", "skip", f"custom model file {settings.local_model}")
    if spec.single_file_package:
        packages = [spec.single_file_package]
    else:
        packages = [p.package for p in spec.parts]
    missing = []
    for package in packages:
        try:
            importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            missing.append(package)
    if missing:
        return Check(
            "model packages",
            "fail",
            f"{len(missing)} of {len(packages)} missing: {', '.join(missing[:4])}"
            + ("…" if len(missing) > 4 else ""),
            "run `make install` (installs them from requirements.lock)",
        )
    return Check(
        "model packages", "ok", f"{len(packages)} of {len(packages)} installed ({spec.title})"
    )


def check_model_file(settings: Settings) -> Check:
    path = locate_model(settings.local_model, settings.model_cache_dir)
    size = path.stat().st_size / 1e9
    return Check("model file", "ok", f"{path} ({size:.2f} GB, checksum verified)")


def check_llama(settings: Settings) -> Check:
    import llama_cpp

    path = locate_model(settings.local_model, settings.model_cache_dir)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        reason = (
            f"crashed with signal {-proc.returncode}"
            if proc.returncode < 0
            else (proc.stderr.strip().splitlines() or ["failed"])[-1]
        )
        return Check(
            "llama.cpp",
            "fail",
            f"llama-cpp-python {llama_cpp.__version__} could not generate: {reason}",
            "rebuild it for this CPU: rm -rf ~/.cache/coachbot/wheels .venv && make install",
        )
    return Check(
        "llama.cpp",
        "ok",
        f"llama-cpp-python {llama_cpp.__version__}; model loads in {proc.stdout.strip()} s "
        "and generates",
    )


def check_embeddings(settings: Settings) -> Check:
    from bot.llm.embeddings import embedding_model_name, make_embeddings

    model = embedding_model_name(settings)
    try:
        vector = make_embeddings(settings).embed_query("The customer feels heard.")
    except Exception as exc:
        if settings.embeddings_provider != "openai":
            raise
        import openai

        from bot.llm.api import settings_api_error

        if isinstance(exc, openai.APIError):  # its message may quote the key
            raise settings_api_error(exc, settings, model) from None
        raise
    detail = f"{settings.embeddings_provider}: {model}, {len(vector)} dimensions"
    return Check("embeddings", "ok", detail)


def check_tiktoken(settings: Settings) -> Check:
    from bot.llm.tokens import count_tokens

    n = count_tokens("Let's solve this together.")
    return Check("tiktoken", "ok", f"cl100k_base works offline ({n} tokens in a test sentence)")


def check_index(settings: Settings) -> Check:
    from bot.knowledge import KnowledgeIndex

    index = KnowledgeIndex(settings)
    status = index.status()  # opening it rebuilds an unusable embedded store
    if index.notices:
        return Check(
            "knowledge index",
            "warn",
            " ".join(index.notices),
            "nothing to do: the old store is kept for inspection; delete it when done",
        )
    skipped = (
        f"; skipped: {', '.join(f'{s.path} ({s.reason})' for s in status.skipped)}"
        if status.skipped
        else ""
    )
    if status.chunks == 0:
        return Check("knowledge index", "fail", "the index is empty", "run `coachbot ingest`")
    if not status.fresh:
        changed = status.stale + status.orphaned
        return Check(
            "knowledge index",
            "warn",
            f"{len(changed)} file(s) changed since the last ingest: {', '.join(changed[:4])}"
            + skipped,
            "run `coachbot ingest`",
        )
    return Check(
        "knowledge index",
        "warn" if status.skipped else "ok",
        f"{status.collection}: {status.indexed_files} files, {status.chunks} chunks, up to date"
        + skipped,
        "fix or remove the skipped files" if status.skipped else None,
    )


def check_api(settings: Settings) -> Check:
    if settings.llm_provider != "openai":
        return Check("OpenAI API", "skip", "not configured (using the embedded model)")
    from bot.errors import ModelUnavailableError
    from bot.llm import make_api_model

    model = make_api_model(settings, max_tokens=1, temperature=0)
    try:
        model.invoke("ping")
    except ModelUnavailableError as exc:  # the cause and the fix, never the key
        if settings.fallback == "local":  # the app still answers, with the embedded model
            fix = f"{exc.hint}; meanwhile the embedded model answers (COACHBOT_FALLBACK=local)"
            return Check("OpenAI API", "warn", exc.args[0], fix)
        return Check("OpenAI API", "fail", exc.args[0], exc.hint)
    from bot.safety import redact

    where = redact(settings.openai_base_url or "api.openai.com")
    return Check("OpenAI API", "ok", f"{settings.openai_model} answers at {where}")


def check_classroom(settings: Settings) -> Check:
    """How many trainees this machine serves on the embedded model, as last measured."""
    limit = settings.max_trainees
    cache = f"prefix cache {settings.prefix_cache_mb} MB"
    if settings.llm_provider == "openai":
        return Check("classroom", "skip", "the model server queues and batches (API model)")
    from bot.service import Services  # reads capacity.json; builds nothing else

    measured = Services(settings).measured_capacity()
    if measured:
        detail = (
            f"{measured['trainees']} trainee(s) at a reply p95 of "
            f"{measured['reply_p95_target_s']:g} s (measured {measured['measured_at']}); {cache}"
        )
        if limit is not None:
            detail += f"; COACHBOT_MAX_TRAINEES={limit} admits {limit}"
        return Check("classroom", "ok", detail)
    admits = f"admits {limit} practice sessions" if limit else "admits every practice session"
    return Check(
        "classroom",
        "warn",
        f"not measured on this machine: the app {admits}; {cache}",
        "run `coachbot capacity` to measure how many trainees it can serve",
    )


def run_checks(settings: Settings) -> list[Check]:
    """All checks, in dependency order."""
    checks: list[Check] = []
    if settings.llm_provider == "local" or settings.fallback == "local":
        checks.append(_timed("model packages", lambda: check_model_packages(settings)))
        checks.append(_timed("model file", lambda: check_model_file(settings)))
        if checks[-1].status == "ok":
            checks.append(_timed("llama.cpp", lambda: check_llama(settings)))
    checks.append(_timed("OpenAI API", lambda: check_api(settings)))
    checks.append(_timed("embeddings", lambda: check_embeddings(settings)))
    checks.append(_timed("tiktoken", lambda: check_tiktoken(settings)))
    checks.append(_timed("knowledge index", lambda: check_index(settings)))
    checks.append(_timed("classroom", lambda: check_classroom(settings)))
    return checks
