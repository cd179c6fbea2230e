"""The chat model factory, the chat session logic (fake model) and the real embedded model."""

from __future__ import annotations

import threading

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from bot.config import Settings
from bot.inputs import EmptyInputError, clean_user_text
from bot.llm import local_model, make_chat_model
from bot.llm.chat import ChatSession
from bot.llm.local_chat import LocalChatModel, to_llama_messages


def test_openai_provider_gives_chat_openai(monkeypatch):
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_MODEL", "gpt-4o-mini")
    model = make_chat_model(Settings(_env_file=None))
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "gpt-4o-mini"


def test_compatible_server_needs_no_key(monkeypatch):
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    model = make_chat_model(Settings(_env_file=None))
    assert isinstance(model, ChatOpenAI)
    assert model.openai_api_base == "http://127.0.0.1:11434/v1"


def test_local_provider_gives_local_model(monkeypatch, tmp_path):
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setattr("bot.llm.locate_model", lambda name, cache: fake)
    model = make_chat_model(Settings(_env_file=None), temperature=0.1)
    assert isinstance(model, LocalChatModel)
    assert model.model_path == str(fake) and model.temperature == 0.1
    assert model.repeat_penalty > 1.0


def test_local_model_selection_names(monkeypatch):
    monkeypatch.setenv("COACHBOT_LOCAL_MODEL", "qwen2.5-coder-0.5b")
    assert Settings(_env_file=None).local_model in local_model.MODELS


def test_messages_map_to_chat_roles():
    chat = to_llama_messages([SystemMessage("s"), HumanMessage("h")])
    assert chat == [{"role": "system", "content": "s"}, {"role": "user", "content": "h"}]


def test_clean_user_text_rules():
    with pytest.raises(EmptyInputError):
        clean_user_text(" \n\t\x00 ", 100)
    assert clean_user_text("hi\x07 there\x00", 100).text == "hi there"
    cut = clean_user_text("word " * 5000, 50, lambda t: len(t.split()))
    assert len(cut.text.split()) == 50 and "only the first" in cut.notices[0]


def test_chat_session_keeps_history_and_trims_to_budget():
    model = FakeListChatModel(responses=["first answer", "second answer", "third answer"])
    session = ChatSession(
        model=model, system_prompt="You coach.", context_tokens=120, reply_tokens=20
    )
    assert "".join(session.stream_reply("q1 " * 5)) == "first answer"
    assert "".join(session.stream_reply("q2")) == "second answer"
    assert len(session.history) == 4
    messages = session._messages("q3 " * 40)  # a long message leaves no room for old turns
    assert messages[0].content == "You coach." and messages[-1].content.startswith("q3")
    assert len(messages) < 2 + len(session.history)


def test_chat_session_refuses_empty_and_cuts_huge_input():
    session = ChatSession(
        model=FakeListChatModel(responses=["ok"]), system_prompt="s", max_input_tokens=30
    )
    with pytest.raises(EmptyInputError):
        session.prepare("   ")
    prepared = session.prepare("complaint " * 10_000)
    assert prepared.notices and len(prepared.text) < 1000


@pytest.mark.integration
def test_real_embedded_model_streams_a_short_reply():
    settings = Settings(_env_file=None, max_tokens=24, temperature=0.0)
    model = make_chat_model(settings, seed=7)
    pieces = list(
        model.stream(
            [
                SystemMessage("Answer in one short sentence."),
                HumanMessage("Say hello to a customer."),
            ]
        )
    )
    text = "".join(str(p.content) for p in pieces)
    assert len(pieces) > 2, "the reply is streamed in pieces"
    assert len(text.split()) >= 2
    assert model.get_num_tokens("hello world") >= 2


@pytest.mark.integration
def test_real_model_is_shared_and_concurrent_calls_queue():
    settings = Settings(_env_file=None, max_tokens=8, temperature=0.0)
    first, second = make_chat_model(settings), make_chat_model(settings)
    assert first.engine is second.engine, "one llama.cpp instance per process"
    results: list[str] = []
    errors: list[BaseException] = []

    def ask(model: LocalChatModel, question: str) -> None:
        try:
            results.append(str(model.invoke([HumanMessage(question)]).content))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [
        threading.Thread(target=ask, args=(m, q))
        for m, q in ((first, "Say yes."), (second, "Say no."), (first, "Say maybe."))
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and len(results) == 3 and all(r.strip() for r in results)


def test_a_grammar_given_as_text_reaches_llama_cpp_compiled():
    from llama_cpp import LlamaGrammar

    model = LocalChatModel(model_path="unused.gguf")  # nothing is loaded before a call
    params = model._params(None, {"grammar": 'root ::= "yes" | "no"'})
    assert isinstance(params["grammar"], LlamaGrammar)
    assert "grammar" not in model._params(None, {})


def test_the_customer_grammar_goes_to_the_embedded_model_only(tmp_path):
    from bot.config import PROJECT_ROOT
    from bot.service import GRAMMAR_FILE, Services
    from tests.conftest import make_settings

    services = Services(make_settings(tmp_path))
    shipped = (PROJECT_ROOT / "prompts" / GRAMMAR_FILE).read_text(encoding="utf-8")
    assert services._customer_grammar(LocalChatModel(model_path="unused.gguf")) == shipped
    assert services._customer_grammar(FakeListChatModel(responses=["x"])) is None
    off = Services(make_settings(tmp_path, customer_grammar=False))
    assert off._customer_grammar(LocalChatModel(model_path="unused.gguf")) is None


@pytest.mark.integration
def test_the_shipped_customer_grammar_parses_and_rules_out_quotes_and_labels():
    from bot.config import PROJECT_ROOT
    from bot.service import GRAMMAR_FILE

    grammar = (PROJECT_ROOT / "prompts" / GRAMMAR_FILE).read_text(encoding="utf-8")
    model = make_chat_model(Settings(_env_file=None, max_tokens=40, temperature=0.0), seed=3)
    ask = [HumanMessage('Write a line of a play: Joan: "I want my money back!" (she shouts)')]
    text = "".join(str(p.content) for p in model.stream(ask, grammar=grammar))
    assert len(text.split()) >= 3
    assert not set(text) & set('\n"“”*()[]:'), text
