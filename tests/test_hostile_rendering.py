"""Hostile input on every surface that shows user or model text (bot.rendering).

Markdown images and links, raw HTML, Rich markup, terminal control codes, Unicode tricks and
oversized text go into the debrief, the trainer's review, hints, coach answers, the app's
messages, `coachbot sessions show` and the HTML eval report. The Markdown is parsed by a real
CommonMark parser (markdown-it-py) and checked the way GFM would read it: no link, no image, no
HTML element, no bare URL or e-mail address GFM would turn into a link, and the words shown
literally. The browser side is tests/e2e/test_hostile_browser.py.
"""

from __future__ import annotations

import html
import re
import time

import pytest
from markdown_it import MarkdownIt
from rich.console import Console
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from typer.testing import CliRunner

from bot.cli import main as cli
from bot.coach.models import CoachAnswer
from bot.config import PROJECT_ROOT
from bot.evals.reports import print_terminal, render_html
from bot.rendering import WORD_JOINER, display_text, markdown_text
from bot.roleplay.models import Hint
from bot.roleplay.scoring import CheckResult, Evidence, Rewrite
from bot.store.sessions import SessionStore
from bot.web import security
from bot.web.views import (
    coach_answer_markdown,
    hint_markdown,
    retrieval_markdown,
    scorecard_markdown,
    session_markdown,
    sessions_table_markdown,
)
from tests.conftest import shown
from tests.test_app import Browser, shared
from tests.test_evals import _case, _report
from tests.test_storage import cli_settings, make_answer, make_scorecard, make_transcript

__all__ = ["cli_settings", "shared"]  # fixtures, used by name

KNOWLEDGE = PROJECT_ROOT / "knowledge"

IMAGE = "![x](http://127.0.0.1:9/pixel.png)"
LINK = "[click me](http://127.0.0.1:9/phish)"
CITATION_TRICK = "![1](http://127.0.0.1:9/one.png) [1](http://127.0.0.1:9/one) [1]: http://x"
RAW_HTML = '<img src="http://127.0.0.1:9/raw.png"> <script>alert(1)</script> <a href="//x">a</a>'
BARE = "<http://127.0.0.1:9/auto> http://127.0.0.1:9/bare www.evil.example a.b@evil.example"
BLOCKS = "# heading\n> quote\n- item\n| a | b |\n|---|---|\n```\ncode\n```\n***"
RICH = "[/] [link=http://x]hi[/link] [bold red]loud"
CONTROL = "bell\x07 esc\x1b[2J\x1b]8;;http://x\x1b\\osc\x1b]8;;\x1b\\ nul\x00 del\x7f c1\x9b"
UNICODE = "\u202egnp.exe\u202c zero\u200bwidth \u2066iso\u2069 \ufeffbom ZWJ👩\u200d💻"
HOSTILE = " ".join([IMAGE, LINK, CITATION_TRICK, RAW_HTML, BARE, BLOCKS, RICH, CONTROL, UNICODE])
# What a reader should see of HOSTILE: the same words, hidden characters gone, one line.
SEEN = " ".join(display_text(HOSTILE).split("\n"))

_parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_ELEMENT = re.compile(
    r"<(a|img|script|iframe|svg|video|audio|source|object|embed|link|style|h\d|blockquote|"
    r"table|pre|code|hr|ul|ol)\b",
    re.I,
)
# What GFM (mdast-util-gfm-autolink-literal, as in Chainlit's bundle) links in plain text.
_GFM_URL = re.compile(r"(https?://|www(?=\.))([-.\w]+)", re.I)
_GFM_EMAIL = re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)")


def words_of(rendered_html: str) -> str:
    """The text of rendered HTML, as the browser shows it (word joiners still in)."""
    return html.unescape(re.sub(r"<[^>]+>", "", rendered_html))


def assert_inert(markdown: str, allowed: tuple[str, ...] = ()) -> str:
    """``markdown`` renders no element but ``allowed`` and nothing GFM would link; its text."""
    rendered = _parser.render(markdown)
    elements = {m.group(1).lower() for m in _ELEMENT.finditer(rendered)}
    assert elements <= set(allowed), rendered
    text = words_of(rendered)
    assert not _GFM_URL.search(text), text
    assert not _GFM_EMAIL.search(text), text
    return text.replace(WORD_JOINER, "").strip()


# --------------------------------------------------------------------------- the one function


def test_markdown_text_snapshot():
    assert markdown_text(f"{IMAGE} {LINK}") == (
        "\\!\\[x\\]\\(http\u2060\\://127\\.0\\.0\\.1\u2060\\:9/pixel\\.png\\) "
        "\\[click me\\]\\(http\u2060\\://127\\.0\\.0\\.1\u2060\\:9/phish\\)"
    )
    assert markdown_text("[1] www.x.org a@b.c\n# h") == (
        "\\[1\\] www\u2060\\.x\\.org a\u2060@b\\.c \\# h"
    )


def test_hostile_text_is_shown_literally_and_inert():
    text = assert_inert(markdown_text(HOSTILE))
    assert text == SEEN
    for literal in (IMAGE, LINK, CITATION_TRICK, RAW_HTML, RICH, "gnp.exe", "zerowidth"):
        assert literal in text
    for hidden in ("\x1b", "\x00", "\x07", "\x9b", "\u202e", "\u2066", "\u200b", "\ufeff"):
        assert hidden not in text
    assert "👩\u200d💻" in text  # a ZWJ emoji sequence is kept


def test_escaped_pieces_stay_inert_when_joined():
    """Streamed tokens are escaped one by one: split anywhere, the whole is still inert."""
    for cut in range(1, len(BARE)):
        joined = markdown_text(BARE[:cut]) + markdown_text(BARE[cut:])
        rendered = _parser.render(joined)
        assert "<a" not in rendered and "<img" not in rendered
        if not BARE[:cut].lower().endswith(("w", "ww")):  # "ww" + "w.": only mid-stream
            assert not _GFM_URL.search(words_of(rendered)), (cut, joined)


def test_oversized_text_is_cut_with_a_note_quickly():
    big = "A" * 100_000
    started = time.perf_counter()
    escaped = markdown_text(big)
    assert time.perf_counter() - started < 1
    assert escaped.startswith("A" * 20_000) and len(escaped) < 20_100
    assert escaped.endswith("… \\(80,000 more characters not shown\\)")


# --------------------------------------------------------------------------- the views


def hostile_transcript():
    transcript = make_transcript(turns=2)
    transcript.customer_name = f"Dana {IMAGE}"
    transcript.scenario_title = f"Title {LINK}"
    transcript.opening_line = f"Opening {RAW_HTML}"
    transcript.turns[0].trainee = HOSTILE
    transcript.turns[1].customer = f"{BARE} {RICH}"
    return transcript


def hostile_card():
    card = make_scorecard(40)
    card.summary = f"summary {IMAGE}"
    card.items.append(
        CheckResult(
            key="avoided_calm_down",
            label=f"Avoided {LINK}",
            kind="avoid",
            passed=False,
            points=0,
            max_points=10,
            evidence=[Evidence(turn=1, quote=HOSTILE, line=HOSTILE)],
            possible=[],
            source_origin="004",
            source_quote=f"{IMAGE} " * 30,  # truncated after escaping would break escapes
        )
    )
    card.rewrites = [
        Rewrite(
            turn=1,
            instead_of=HOSTILE,
            try_saying=f"try {LINK}",
            because=f"because {RAW_HTML}",
            source_origin="004",
        )
    ]
    return card


def test_debrief_with_hostile_text_is_inert():
    debrief = scorecard_markdown(hostile_card(), hostile_transcript(), KNOWLEDGE)
    text = assert_inert(debrief, allowed=("h2", "h3", "ul"))
    assert f"turn 1: “{SEEN}”" in text
    assert f"instead of “{SEEN}”, try “try {LINK}”. because {RAW_HTML}" in text
    assert f"Title {LINK} with Dana {IMAGE} (hard)" in text
    assert "summary " + IMAGE in text and f"✘ Avoided {LINK} (0/10)" in text


def test_review_with_hostile_text_is_inert(tmp_path):
    store = SessionStore(f"sqlite:///{tmp_path / 'c.db'}")
    practice = store.start_session("practice", user=f"sam {IMAGE}", role="trainee")
    transcript = hostile_transcript()
    transcript.turns[1].trainee = "B" * 100_000  # saved by another client: no input cut
    store.save_practice(practice, transcript, hostile_card())
    coach = store.start_session("coach", user=f"ali {LINK}")
    store.add_coach_exchange(coach, make_answer(HOSTILE))
    record = store.get_session(practice)
    page = session_markdown(record, KNOWLEDGE)
    text = assert_inert(page, allowed=("h2", "h3", "ul", "hr"))
    assert f"sam {IMAGE} (trainee)" in text
    assert f"Trainee: {SEEN}" in text and f"Dana {IMAGE}: Opening {RAW_HTML}" in text
    assert "(80,000 more characters not shown)" in text
    exchanges = session_markdown(store.get_session(coach), KNOWLEDGE)
    assert f"Q: {SEEN}" in assert_inert(exchanges, allowed=("h2",))
    table = sessions_table_markdown(store.list_sessions())
    table_html = _parser.render(table)
    assert "<table>" in table_html and table_html.count("<tr>") == 3  # header + 2: no row forged
    assert f"ali {LINK}" in assert_inert(table, allowed=("h3", "table", "code"))
    store.close()


def test_hint_with_hostile_text_is_inert():
    hint = Hint(
        turn=1,
        text=HOSTILE,
        behaviour_id="validate_feelings",
        example=f"{IMAGE} {LINK}",
        source_origin="004",
        source_quote=RAW_HTML,
    )
    text = assert_inert(hint_markdown(hint, KNOWLEDGE))
    assert text.startswith(f"Hint: {SEEN}") and f"For example: “{IMAGE} {LINK}”" in text


def test_coach_answer_with_hostile_model_text_is_inert():
    answer = make_answer("q")
    answer.say, answer.why, answer.avoid = HOSTILE, f"{CITATION_TRICK} [1]", f"avoid {IMAGE}"
    answer.citations[0].metadata["title"] = f"Handling anger {IMAGE} <b>x</b> www.x.org"
    markdown = coach_answer_markdown(answer)
    text = assert_inert(markdown)
    assert f"Say: “{SEEN}”" in text and f"Why: {CITATION_TRICK} [1]" in text
    assert f"Avoid: avoid {IMAGE}" in text
    assert "Sources: Source 1: Handling anger x" in text  # the label keeps no markup
    declined = CoachAnswer(question="q", retrieval_query="q", answer=HOSTILE, out_of_scope=True)
    assert assert_inert(coach_answer_markdown(declined)) == SEEN
    assert assert_inert(retrieval_markdown(answer.citations)).startswith("[1] Source 1: ")


# --------------------------------------------------------------------------- the app


@pytest.fixture
def hostile_services(shared, tmp_path):
    """The app over fake models that answer with markup (test_app's index and engine)."""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    from bot.service import Services
    from bot.web import app

    settings, index, engine = shared
    svc = Services(
        settings,
        model=FakeListChatModel(responses=[f"Say: {IMAGE} sorry\nWhy: {LINK} [1]."]),
        customer_model=FakeListChatModel(responses=[f"Fine. {IMAGE} {LINK} {BARE}"]),
        index=index,
        guidance=engine,
        store=SessionStore(f"sqlite:///{tmp_path / 'coachbot.db'}"),
    )
    app.use_services(svc)
    yield svc
    app.use_services(None)


def test_app_messages_escape_model_text_errors_and_the_retrieval_step(hostile_services):
    from bot.web import app

    practice = Browser(app.PRACTICE)
    practice.run(app.on_chat_start)
    practice.say(HOSTILE)
    coach = Browser(app.COACH)
    coach.run(app.on_chat_start)
    coach.say(f"{RAW_HTML} what do I say?")
    review = Browser(app.REVIEW)
    review.run(app.on_chat_start)
    review.say(f"{IMAGE}")  # not a session id: the error names it
    for browser in (practice, coach, review):
        for event, data in browser.events:
            if event == "stream_token":
                assert_inert(data["token"])
        for message in browser.messages():
            assert_inert(message.get("output", ""), allowed=("h3", "table", "code", "ul"))
            assert_inert(message.get("input") or "")
    step = next(m for m in coach.messages() if m.get("type") == "retrieval")
    assert shown(step["input"]) == f"{RAW_HTML} what do I say?" and step["showInput"] is True
    assert any(IMAGE in shown(t) for t in review.markdown())


# --------------------------------------------------------------------------- the CLI


def test_sessions_show_prints_hostile_text_literally(cli_settings, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    store = SessionStore.from_settings(cli_settings)
    practice = store.start_session("practice", user="[bold red]sam", thread_id="tp")
    transcript = make_transcript(turns=2)
    transcript.turns[0].trainee = f"{RICH} {CONTROL} {UNICODE}"
    transcript.turns[1].trainee = "C" * 100_000
    store.save_practice(practice, transcript, make_scorecard(50))
    store.record_feedback(thread_id="tp", step_id="a", value=0, comment=f"{RICH} {CONTROL}")
    store.close()
    result = CliRunner().invoke(cli.app, ["sessions", "show", practice])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"1. you> {RICH} {display_text(CONTROL)} {display_text(UNICODE)}" in out
    assert "[bold red]sam" in out and f"{RICH} {display_text(CONTROL)}" in out
    for hidden in ("\x1b", "\x00", "\x07", "\x9b", "\u202e", "\u200b"):
        assert hidden not in out
    assert "(80,000 more characters not shown)" in out


def test_eval_terminal_prints_model_text_literally():
    case = _case("s/a", False)
    case.runs[0].assertions[0].why = f"{RICH} {CONTROL}"
    report = _report(case)
    report.exit_code = 1
    console = Console(record=True, width=400, force_terminal=True)
    print_terminal(report, console)
    text = console.export_text()
    assert f"s/a: contains “x”: {RICH} {display_text(CONTROL)}" in text
    assert "\x1b]8" not in console.export_text(styles=True)  # no hyperlink escape


def test_html_eval_report_is_inert_and_loads_nothing():
    case = _case("s/a", False)
    case.runs[0].output_text = f"{RAW_HTML} {CONTROL} {UNICODE}"
    page = render_html(_report(case))
    assert "<script>alert" not in page and '<img src="http://127.0.0.1:9' not in page
    assert "&lt;img src=&#34;http://127.0.0.1:9/raw.png&#34;&gt;" in page
    for hidden in ("\x1b", "\x00", "\u202e", "\u200b"):
        assert hidden not in page
    assert (
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">" in page
    )


# --------------------------------------------------------------------------- the CSP


def _starlette() -> Starlette:
    def boom(request):
        raise RuntimeError("boom")

    routes = [
        Route("/", lambda request: PlainTextResponse("ok")),
        Route("/boom", boom),
    ]
    return Starlette(routes=routes)


@pytest.mark.parametrize("started", [False, True])
def test_security_headers_on_every_response(started):
    server = _starlette()
    if started:
        server.middleware_stack = server.build_middleware_stack()  # as during the lifespan
    security.install_security_headers(server)
    security.install_security_headers(server)  # once only
    with TestClient(server, raise_server_exceptions=False) as client:
        for path, status in (("/", 200), ("/missing", 404), ("/boom", 500)):
            response = client.get(path)
            assert response.status_code == status
            policy = response.headers["content-security-policy"]
            assert response.headers.get_list("content-security-policy") == [policy]
            assert "img-src 'self' data: blob:" in policy
            assert "frame-ancestors 'self'" in policy and "object-src 'none'" in policy
            assert response.headers["x-frame-options"] == "SAMEORIGIN"


def test_the_policy_allows_exactly_chainlits_inline_scripts():
    from chainlit.server import get_html_template

    page = get_html_template("")
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(inline) == 2  # "const global = globalThis" and the theme/transports script
    policy = security.chainlit_policy()
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert script_src.split()[1:] == ["'self'", *security.script_hashes(page)]
    assert len(script_src.split()) == 4
    assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src
