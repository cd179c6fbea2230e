"""Hostile text in the real browser: nothing a trainee types or a model writes loads a remote
URL or becomes a link, in the live chat, the debrief, the trainer's review or a coach answer;
the Content-Security-Policy is on, breaks nothing, and blocks a remote image.

The app runs as in production (`chainlit run bot/web/app.py`, login on, a trainer) over a stub
OpenAI-compatible server (tests/openai_stub.py) whose every reply is itself hostile, so the
model's text is tested too. Nothing listens on 127.0.0.1:9: the browser must never ask it.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import load
from tests.e2e.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _skip_reason, send, shot
from tests.openai_stub import serve

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

USER, PASSWORD = "tina", "reviews-all-day"
EVIL = "127.0.0.1:9"
IMAGE = f"![x](http://{EVIL}/pixel.png)"
LINK = f"[click me](http://{EVIL}/phish)"
HOSTILE = (
    f"Please calm down, it's only a parcel. {IMAGE} {LINK} <img src=http://{EVIL}/raw.png> "
    f"http://{EVIL}/bare www.evil.example"
)
MODEL_REPLY = f"Say: I hear you {IMAGE} {LINK}\nWhy: Listening helps [1](http://{EVIL}/cite)."
WORD_JOINER = "\u2060"
TIMEOUT_MS = 60_000
# Chainlit's page asks for Google Fonts and a KaTeX stylesheet from a CDN: the policy blocks
# them (offline they fail anyway) and nothing else.
EXPECTED_BLOCKS = ("https://fonts.googleapis.com/", "https://cdn.jsdelivr.net/")
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", e =>
  window.__csp.push({directive: e.effectiveDirective, uri: e.blockedURI}));
"""


@pytest.fixture(scope="module")
def app_url(tmp_path_factory) -> Iterator[str]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from bot.store.users import UserStore

    tmp = tmp_path_factory.mktemp("hostile")
    UserStore(tmp / "data" / "users.yaml").add(USER, PASSWORD, "trainer")
    with serve(reply=MODEL_REPLY) as stub:
        env = {
            **os.environ,
            "COACHBOT_DATA_DIR": str(tmp / "data"),
            "COACHBOT_AUTH": "on",
            "OPENAI_BASE_URL": stub.url,
            "OPENAI_API_KEY": "stub",
            "OPENAI_MODEL": "stub",
            "COACHBOT_EMBEDDINGS": "local",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("CHAINLIT_AUTH_SECRET", None)
        server = load.AppServer("bot/web/app.py", env, tmp / "app.log")
        try:
            server.start(120)
            yield server.url
        finally:
            server.stop()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copy(server.log_path, ARTIFACTS / "hostile-app.log")
            assert "Traceback" not in Path(server.log_path).read_text()


@pytest.fixture(scope="module")
def browser_page(app_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_init_script(COLLECT_VIOLATIONS)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.requests = []  # every URL the page asked for
        page.failures = {}  # URL -> why it failed
        page.on("request", lambda request: page.requests.append(request.url))
        page.on(
            "requestfailed", lambda request: page.failures.update({request.url: request.failure})
        )
        yield page
        context.close()
        browser.close()


def assert_nothing_remote(page) -> None:
    """No request to the hostile host, no link or picture pointing there."""
    assert [url for url in page.requests if EVIL in url] == []
    assert page.locator(f"a[href*='{EVIL}'], img[src*='{EVIL}']").count() == 0
    origin = page.evaluate("() => location.origin")
    pictures = page.evaluate("() => [...document.images].map(i => i.src)")
    assert all(src.startswith((origin, "blob:", "data:")) for src in pictures), pictures


def page_text(page) -> str:
    return page.evaluate("() => document.body.innerText").replace(WORD_JOINER, "")


def switch_profile(page, name: str) -> None:
    page.locator("#chat-profiles").click()
    page.get_by_text(name).last.click()
    confirm = page.locator("#confirm")
    if confirm.count():
        confirm.click()


def test_hostile_text_in_chat_debrief_review_and_coach(browser_page, app_url):
    page = browser_page
    response = page.goto(app_url)
    policy = response.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in policy and "frame-ancestors 'self'" in policy
    page.locator("#email").fill(USER)
    page.locator("#password").fill(PASSWORD)
    page.keyboard.press("Enter")
    mood = "(document.body.innerText.match(/anger \\d+\\/10/g) || []).length"
    page.wait_for_function(f"() => {mood} >= 1", timeout=TIMEOUT_MS * 2)

    # The live chat: the trainee's own message is plain text, the customer's (model) line too.
    send(page, HOSTILE)
    page.wait_for_function(f"() => {mood} >= 2", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    shot(page, "h1-hostile-chat")
    own = page.locator("[data-step-type='user_message']").last
    assert own.inner_text().strip() == HOSTILE
    assert own.locator("pre").count() == 1  # Chainlit's plain-text rendering
    assert_nothing_remote(page)

    # The debrief quotes the trainee's line (the customer may have ended the call already).
    page.wait_for_timeout(1500)
    if page.get_by_text("What you did").count() == 0:
        page.get_by_role("button", name="End and debrief").last.click()
    page.get_by_text("What you did").first.wait_for()
    page.wait_for_function(  # the mood curve, from the app itself
        "() => [...document.images].some(i => i.alt === 'Mood curve' && i.naturalWidth > 0)"
    )
    shot(page, "h2-hostile-debrief")
    assert "calm down" in page_text(page).split("Debrief:")[-1].lower()
    assert_nothing_remote(page)

    # The trainer's review of the saved session.
    switch_profile(page, "Review sessions")
    page.get_by_text("Saved sessions").first.wait_for()
    session_id = page.locator("table code").first.inner_text().strip()
    send(page, session_id)
    page.get_by_text("Trainee:").first.wait_for()
    shot(page, "h3-hostile-review")
    review = page_text(page).split("Trainee:")[-1]
    assert HOSTILE in review, review[:500]
    assert_nothing_remote(page)

    # A coach answer: the model's reply is hostile, streamed and final.
    switch_profile(page, "Ask the coach")
    page.locator("#starters").wait_for()
    page.wait_for_timeout(1500)  # the new chat's socket session
    send(page, f"{IMAGE} The customer is shouting, what do I say?")
    page.get_by_text("Why:").first.wait_for()
    page.wait_for_timeout(1000)
    shot(page, "h4-hostile-coach")
    assert f"I hear you {IMAGE} {LINK}" in page_text(page)
    assert_nothing_remote(page)
    # Its sources are still linked to their side elements (their names are not escaped).
    page.get_by_text(re.compile(r"^Source 1: ")).first.click()
    assert len(page.locator("#side-view-content").inner_text().strip()) > 40

    # The app worked under its policy: the only violations are Chainlit's CDN stylesheets.
    violations = page.evaluate("() => window.__csp")
    unexpected = [v for v in violations if not v["uri"].startswith(EXPECTED_BLOCKS)]
    assert unexpected == [], unexpected


def test_the_policy_blocks_a_remote_image(browser_page):
    page = browser_page
    page.evaluate(
        f"""() => {{
        const img = document.createElement("img");
        img.src = "http://{EVIL}/csp-probe.png";
        document.body.appendChild(img);
    }}"""
    )
    page.wait_for_function(
        "() => window.__csp.some(v => v.uri.includes('csp-probe'))", timeout=10_000
    )
    blocked = [v for v in page.evaluate("() => window.__csp") if "csp-probe" in v["uri"]]
    assert blocked[0]["directive"] == "img-src"
    # Chromium reports the attempt, and that the policy stopped it before the network.
    assert page.failures[f"http://{EVIL}/csp-probe.png"] == "csp"  # Playwright: blocked by CSP
