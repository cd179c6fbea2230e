"""One redaction (bot.safety.redact) for keys and URL credentials, used by model descriptions,
errors, eval reports and every log record. End-to-end checks with a leaky server are in
tests/test_secrets.py."""

from __future__ import annotations

import json
import logging

import pytest

from bot.safety import RedactingFilter, install_log_redaction, redact

from .conftest import make_settings

URL = "https://bob:s3cret@llm.example.com/v1"
KEY = "sk-abc123def456ghi789jkl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (URL, "https://bob:***@llm.example.com/v1"),
        ("at http://tok3n@host:8080/v1 now", "at http://***@host:8080/v1 now"),
        (f"key {KEY}.", "key sk-***."),
        ("sk-proj-Ab_9-xyz12345", "sk-***"),
        ("Authorization: Bearer eyJhbGciOi.J9x", "Authorization: Bearer ***"),
        ("Authorization: Basic Ym9iOnMzY3JldA==", "Authorization: Basic ***"),
        ("http://h/v1/models?api_key=abc123&x=1", "http://h/v1/models?api_key=***&x=1"),
        ("postgresql://coachbot:pw@db:5432/c", "postgresql://coachbot:***@db:5432/c"),
    ],
)
def test_keys_and_url_credentials_are_masked(text, expected):
    assert redact(text) == expected
    assert redact(redact(text)) == expected  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "the bearer of bad news, a task-force, disk-based storage",
        "http://127.0.0.1:11434/v1 and https://api.openai.com/v1",
        "write to sam@example.com or see http://host/a@b",
    ],
)
def test_ordinary_text_is_left_alone(text):
    assert redact(text) == text


def test_a_known_secret_is_masked_whatever_it_looks_like():
    assert redact("the server said: key hunter2xyz is wrong", ["hunter2xyz"]) == (
        "the server said: key *** is wrong"
    )


def test_model_descriptions_hide_url_credentials_and_keys(tmp_path):
    from bot.llm import describe_llm

    settings = make_settings(tmp_path, openai_base_url=URL, openai_api_key=KEY, llm="openai")
    described = describe_llm(settings)
    assert described == "gpt-4o-mini via https://bob:***@llm.example.com/v1"
    assert "s3cret" not in described


def test_api_errors_name_the_server_without_its_credentials():
    import httpx
    import openai

    from bot.llm.api import api_error

    request = httpx.Request("POST", f"{URL}/chat/completions")
    exc = openai.APIConnectionError(request=request)
    error = api_error(exc, where=URL, model="m", timeout=5, key=KEY)
    assert "s3cret" not in str(error) and "https://bob:***@llm.example.com/v1" in str(error)


@pytest.fixture
def redacting(caplog):
    install_log_redaction(["hunter2xyz"])
    caplog.set_level(logging.DEBUG)
    return caplog


def test_log_records_of_any_logger_are_redacted(redacting):
    # child loggers (a filter on "coachbot" alone would not see these), third-party loggers,
    # %-arguments, and exception tracebacks
    logging.getLogger("coachbot.app.deep").warning("calling %s with %s", URL, KEY)
    logging.getLogger("openai._base_client").debug("Authorization: Bearer %s", "ab12cd34ef")
    logging.getLogger("httpx").info("key hunter2xyz rejected")
    try:
        raise RuntimeError(f"Incorrect API key provided: {KEY} at {URL}")
    except RuntimeError:
        logging.getLogger("coachbot.app").exception("reply failed")
    text = redacting.text
    for secret in ("s3cret", KEY, "ab12cd34ef", "hunter2xyz"):
        assert secret not in text, text
    assert "https://bob:***@llm.example.com/v1" in text and "reply failed" in text
    assert "RuntimeError: Incorrect API key provided: sk-***" in text


def test_records_keep_their_shape_for_formatters_that_unpack_arguments(redacting):
    """uvicorn's access log formatter unpacks ``record.args``: they stay a 5-tuple."""
    logger = logging.getLogger("uvicorn.access")
    logger.info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5", "GET", "/x?token=abc123", "1.1", 200)
    record = redacting.records[-1]
    assert isinstance(record.args, tuple) and len(record.args) == 5 and record.args[4] == 200
    assert record.getMessage() == '127.0.0.1:5 - "GET /x?token=*** HTTP/1.1" 200'


def test_the_filter_alone_redacts_a_record():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "url %s", (URL,), None)
    RedactingFilter().filter(record)
    assert record.getMessage() == "url https://bob:***@llm.example.com/v1"


def test_eval_reports_hold_no_credentials(tmp_path):
    from bot.evals.reports import write_reports
    from bot.evals.results import CaseResult, CaseRun, RunReport

    run = CaseRun(
        repeat=0,
        passed=False,
        score=0.0,
        seconds=0.0,
        error=f"ModelUnavailableError: the API at {URL} refused {KEY}",
    )
    case = CaseResult(
        key="s/c",
        suite="s",
        id="c",
        kind="coach",
        threshold=1.0,
        runs=[run],
        passed=False,
        score=0.0,
        pass_rate=0.0,
        seconds=0.0,
    )
    report = RunReport(
        started="2025-01-01T00:00:00+00:00",
        seconds=1.0,
        model=f"gpt-4o-mini via {URL}",
        model_identity=json.dumps({"base_url": URL}),
        prompts_dir="prompts",
        suites=["s"],
        repeat=1,
        workers=1,
        cache="off",
        cases=[case],
    )
    paths = write_reports(report, tmp_path / "report")
    assert set(paths) == {"html", "junit", "json"}
    for path in paths.values():
        content = path.read_text()
        assert "s3cret" not in content and KEY not in content, path
        assert "bob:***@llm.example.com" in content, path
