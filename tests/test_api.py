"""A failing OpenAI-compatible API: retries with backoff, one-line errors, the local fallback.

A stub server on 127.0.0.1 (tests/openai_stub.py) plays 401, 429, 500, a hang past the timeout
or an answer. openai's backoff waits are recorded instead of slept, so retries cost no time.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage
from typer.testing import CliRunner

from bot.cli import common
from bot.cli import main as cli
from bot.config import PROJECT_ROOT, Settings
from bot.errors import ModelUnavailableError
from bot.llm import make_chat_model, model_notice
from bot.llm.api import ApiChatModel, FallbackChatModel

from .conftest import ARTICLES_DIR, PROMPTS, make_settings
from .openai_stub import REPLY, serve

KEY = "sk-test-SECRET-0123456789abcdef"
LOCAL_REPLY = (
    "Say: You have every right to be upset, and I'm sorry your parcel arrived broken.\n"
    "Why: Validating their feelings helps them feel heard [1]."
)
runner = CliRunner()


@pytest.fixture
def sleeps(monkeypatch):
    """openai's backoff waits, recorded instead of slept."""
    import openai._base_client as base

    waits: list[float] = []

    class Clock:
        def __getattr__(self, name: str):
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            waits.append(seconds)

    monkeypatch.setattr(base, "time", Clock())
    return waits


@pytest.fixture
def local_model(monkeypatch):
    """The embedded model, faked: it counts how often the fallback was built."""
    built: list[FakeListChatModel] = []

    def make(settings, **overrides):
        built.append(FakeListChatModel(responses=[LOCAL_REPLY]))
        return built[-1]

    monkeypatch.setattr("bot.llm.make_local_model", make)
    return built


def api_settings(tmp_path, url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "openai_base_url": url,
        "openai_api_key": KEY,
        "openai_timeout_s": 2.0,
        "openai_max_retries": 3,
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


def failure(model, question: str = "hello") -> ModelUnavailableError:
    with pytest.raises(ModelUnavailableError) as caught:
        "".join(str(c.content) for c in model.stream([HumanMessage(question)]))
    return caught.value


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text and KEY[10:] not in text


# --------------------------------------------------------------------------- retries, messages


def test_a_wrong_key_fails_at_once_with_the_cause_and_the_fix(tmp_path, sleeps, caplog):
    caplog.set_level(logging.DEBUG)
    with serve([401]) as stub:
        error = failure(make_chat_model(api_settings(tmp_path, stub.url)))
    assert stub.count == 1 and not sleeps, "a 401 is not retried"
    assert stub.requests[0].authorization == f"Bearer {KEY}"  # sent, and echoed by the server
    assert str(error) == "the API rejected the key with HTTP 401 (check OPENAI_API_KEY)"
    assert_no_key(str(error), "".join(traceback.format_exception(error)), caplog.text)


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (429, "the API kept refusing requests with HTTP 429 (rate limit) after 3 retries"),
        (500, "the API server failed with HTTP 500 after 3 retries"),
        (503, "the API server failed with HTTP 503 after 3 retries"),
    ],
)
def test_rate_limits_and_server_errors_are_retried_with_backoff(
    tmp_path, sleeps, caplog, status, cause
):
    caplog.set_level(logging.DEBUG)
    with serve([status]) as stub:
        error = failure(make_chat_model(api_settings(tmp_path, stub.url)))
    assert stub.count == 4 and [r.retry_count for r in stub.requests] == [0, 1, 2, 3]
    assert len(sleeps) == 3 and sleeps == sorted(sleeps) and sleeps[0] > 0.1, "backoff grows"
    assert error.args[0] == cause and error.hint
    assert "\n" not in str(error)
    assert_no_key(str(error), caplog.text)


def test_a_timeout_is_retried_then_named_with_its_setting(tmp_path, sleeps):
    started = time.perf_counter()
    with serve(["hang"]) as stub:
        settings = api_settings(tmp_path, stub.url, openai_timeout_s=0.2, openai_max_retries=2)
        error = failure(make_chat_model(settings))
    assert stub.count == 3 and len(sleeps) == 2
    assert error.args[0] == "the API did not answer within 0.2 s after 2 retries"
    assert "OPENAI_TIMEOUT" in error.hint
    assert time.perf_counter() - started < 15  # bounded: 3 tries of 0.2 s, no real backoff


def test_a_failure_that_clears_up_is_retried_into_an_answer(tmp_path, sleeps):
    with serve([500, 429, "ok"]) as stub:
        model = make_chat_model(api_settings(tmp_path, stub.url))
        text = "".join(str(c.content) for c in model.stream("hello"))
    assert text == REPLY and stub.count == 3 and len(sleeps) == 2


def test_the_number_of_retries_is_a_setting(tmp_path, sleeps):
    with serve([500]) as stub:
        error = failure(make_chat_model(api_settings(tmp_path, stub.url, openai_max_retries=0)))
    assert stub.count == 1 and not sleeps
    assert error.args[0] == "the API server failed with HTTP 500"


def test_a_server_message_is_shown_without_the_key(tmp_path):
    with serve([400]) as stub:
        error = failure(make_chat_model(api_settings(tmp_path, stub.url)))
    assert stub.count == 1
    assert error.args[0] == (
        "the API refused the request with HTTP 400: max_tokens is too large for key ***."
    )
    assert_no_key(str(error))


# --------------------------------------------------------------------------- the fallback


def test_the_fallback_is_off_unless_set(tmp_path, monkeypatch):
    with serve(["ok"]) as stub:
        assert isinstance(make_chat_model(api_settings(tmp_path, stub.url)), ApiChatModel)
    monkeypatch.setenv("COACHBOT_FALLBACK", "local")
    assert Settings(_env_file=None).fallback == "local"
    monkeypatch.setenv("COACHBOT_FALLBACK", "maybe")
    with pytest.raises(ValueError, match="COACHBOT_FALLBACK"):
        Settings(_env_file=None)


def test_the_local_model_answers_when_the_api_fails_and_says_so(tmp_path, sleeps, local_model):
    with serve([500]) as stub:
        model = make_chat_model(api_settings(tmp_path, stub.url, fallback="local"))
        assert isinstance(model, FallbackChatModel) and not local_model, "built on first use"
        chunks = list(model.stream([HumanMessage("hello")]))
        reply = model.invoke([HumanMessage("hello")])
    assert stub.count == 8, "each call tried the API with its retries first"
    assert "".join(str(c.content) for c in chunks) == LOCAL_REPLY == reply.content
    notice = model_notice(chunks[0])
    assert notice == model_notice(reply)
    assert notice == (
        "The API did not answer — the API server failed with HTTP 500 after 3 retries "
        f"(try again later, or check the server at {stub.url}) — so the embedded model "
        "answered instead."
    )
    assert len(local_model) == 1


def test_the_api_answers_when_it_works_even_with_the_fallback_on(tmp_path, local_model):
    with serve(["ok"]) as stub:
        model = make_chat_model(api_settings(tmp_path, stub.url, fallback="local"))
        chunks = list(model.stream("hello"))
    assert "".join(str(c.content) for c in chunks) == REPLY
    assert not any(model_notice(c) for c in chunks) and not local_model


def test_a_wrong_key_falls_back_at_once(tmp_path, sleeps, local_model):
    with serve([401]) as stub:
        model = make_chat_model(api_settings(tmp_path, stub.url, fallback="local"))
        reply = model.invoke("hello")
    assert stub.count == 1 and not sleeps and reply.content == LOCAL_REPLY
    assert "rejected the key" in model_notice(reply)
    assert_no_key(model_notice(reply))


def test_no_fallback_model_either_gives_both_reasons(tmp_path, monkeypatch):
    def missing(settings, **overrides):
        raise ModelUnavailableError("3 model parts are missing", hint="run `make install`")

    monkeypatch.setattr("bot.llm.make_local_model", missing)
    with serve([401]) as stub:
        error = failure(make_chat_model(api_settings(tmp_path, stub.url, fallback="local")))
    assert error.args[0] == (
        "the API rejected the key with HTTP 401, and the embedded fallback model is "
        "unavailable too: 3 model parts are missing"
    )
    assert error.hint == "check OPENAI_API_KEY"


# --------------------------------------------------------------------------- where users see it


QUESTION = "She's shouting that her parcel is late again, what do I say?"


def test_the_coach_names_the_api_failure_in_its_notice(tmp_path, index, engine):
    from bot.coach.coach import Coach

    with serve([401]) as stub:
        answer = Coach(
            make_chat_model(api_settings(tmp_path, stub.url)), index, engine, prompts=PROMPTS
        ).ask(QUESTION)
    assert "say_replaced_from_catalogue" in answer.flags and answer.say and answer.grounded
    assert answer.notices == [
        "The model did not answer — the API rejected the key with HTTP 401 (check "
        "OPENAI_API_KEY) — so this answer comes from the guidance catalogue."
    ]
    assert_no_key(answer.model_dump_json())


def test_the_coach_says_when_the_embedded_model_answered(tmp_path, index, engine, local_model):
    from bot.coach.coach import Coach

    with serve([429]) as stub:
        settings = api_settings(tmp_path, stub.url, fallback="local", openai_max_retries=0)
        answer = Coach(make_chat_model(settings), index, engine, prompts=PROMPTS).ask(QUESTION)
    assert answer.say.startswith("You have every right") and "model_error" not in answer.flags
    assert any("so the embedded model answered instead" in n for n in answer.notices)


def test_a_practice_turn_names_the_api_failure(tmp_path, engine, local_model):
    from bot.service import PracticeRun, Services
    from bot.store.sessions import SessionStore

    line = "I'm so sorry your parcel arrived smashed, that must be really upsetting."
    store = SessionStore(f"sqlite:///{tmp_path / 'coachbot.db'}")
    with serve([401]) as stub:
        for fallback in ("none", "local"):
            settings = api_settings(tmp_path, stub.url, fallback=fallback)
            model = make_chat_model(settings, temperature=0.8)
            services = Services(settings, model=model, guidance=engine, store=store)
            run = PracticeRun(services, "damaged-delivery")
            turn = run.respond(line)
            notices = run.take_notices()
            if fallback == "none":
                assert turn.fallback_used and "rejected the key" in turn.model_error
                assert notices == [
                    "The model did not answer — the API rejected the key with HTTP 401 (check "
                    "OPENAI_API_KEY) — so the customer's line is a trainer-written one. Carry "
                    "on: your session is intact."
                ]
            else:
                assert turn.model_error is None and turn.model_notice
                assert notices == [turn.model_notice] and "embedded model" in notices[0]


@pytest.fixture
def cli_api(tmp_path, monkeypatch):
    """The CLI on settings that point at a stub server (started by each test)."""
    shutil.copytree(ARTICLES_DIR, tmp_path / "knowledge" / "articles")
    shutil.copy(PROJECT_ROOT / "knowledge" / "guidance.yaml", tmp_path / "knowledge")

    def use(url: str, **overrides: object) -> Settings:
        settings = api_settings(tmp_path, url, **overrides)
        monkeypatch.setattr(common, "get_settings", lambda: settings)
        return settings

    return use


def test_cli_ask_shows_the_api_failure_without_a_traceback(cli_api):
    with serve([401]) as stub:
        cli_api(stub.url)
        assert runner.invoke(cli.app, ["ingest"]).exit_code == 0
        result = runner.invoke(cli.app, ["ask", QUESTION])
    assert result.exit_code == 0, result.output
    assert "the API rejected the key with HTTP 401 (check OPENAI_API_KEY)" in result.stderr
    assert "Say: " in result.stdout and "Traceback" not in result.output
    assert_no_key(result.output)


def test_cli_chat_shows_the_api_failure_and_the_fallback(cli_api, local_model):
    with serve([401]) as stub:
        cli_api(stub.url)
        result = runner.invoke(cli.app, ["chat"], input="What do I say?\n/quit\n")
        assert result.exit_code == 0, result.output
        assert (
            "The model did not answer: the API rejected the key with HTTP 401 (check "
            "OPENAI_API_KEY)" in " ".join(result.stdout.split())
        )
        cli_api(stub.url, fallback="local")
        result = runner.invoke(cli.app, ["chat"], input="What do I say?\nAnd then?\n/quit\n")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("You have every right") == 2
    assert result.stderr.count("so the embedded model answered instead") == 1  # said once
    assert "Traceback" not in result.output
    assert_no_key(result.output)


def test_cli_doctor_names_the_cause_and_the_fix(cli_api, sleeps):
    with serve([401]) as stub:
        cli_api(stub.url)
        result = runner.invoke(cli.app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    api = checks["OpenAI API"]
    assert api["status"] == "fail" and result.exit_code == 1
    assert api["detail"] == "the API rejected the key with HTTP 401"
    assert api["fix"] == "check OPENAI_API_KEY"
    assert "llama.cpp" not in checks, "the embedded model is not checked when unused"
    assert_no_key(result.output)


def test_cli_doctor_names_an_openai_embeddings_failure_without_the_key(cli_api, sleeps):
    from bot.llm.tokens import seed_tiktoken_cache

    seed_tiktoken_cache()  # OpenAIEmbeddings needs the plain cl100k_base, offline
    with serve([401]) as stub:
        cli_api(stub.url, embeddings="openai")
        result = runner.invoke(cli.app, ["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert any(r.path == "/v1/embeddings" for r in stub.requests), "the key reached the server"
    assert checks["embeddings"]["detail"] == "the API rejected the key with HTTP 401"
    assert checks["embeddings"]["fix"] == "check OPENAI_API_KEY"
    assert_no_key(result.output)


def test_cli_errors_raised_by_openai_itself_are_one_line_without_the_key(cli_api, monkeypatch):
    """E.g. OpenAI embeddings: the raw openai error quotes the key; the CLI does not."""
    import openai

    with serve([401]) as stub:
        cli_api(stub.url)

        def search(self, query, k=4):
            client = openai.OpenAI(api_key=KEY, base_url=stub.url, max_retries=0)
            client.embeddings.create(model="text-embedding-3-small", input=[query])

        monkeypatch.setattr("bot.knowledge.KnowledgeIndex.search", search)
        result = runner.invoke(cli.app, ["retrieve", "calm down"])
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "coachbot: error: the API rejected the key with HTTP 401 (check OPENAI_API_KEY)"
    )
    assert_no_key(result.output)


# --------------------------------------------------------------------------- real embedded model


@pytest.mark.integration
def test_the_real_embedded_model_stands_in_for_a_failing_api(tmp_path, sleeps):
    with serve([503]) as stub:
        settings = api_settings(
            tmp_path, stub.url, fallback="local", max_tokens=16, temperature=0.0
        )
        reply = make_chat_model(settings).invoke([HumanMessage("Say hello to a customer.")])
    assert stub.count == 4 and str(reply.content).strip()
    assert "HTTP 503" in model_notice(reply)
