"""End to end in a real browser: the app on localhost, driven by Playwright in Debian's Chromium.

The app runs on the embedded model with login on (a trainee user), in a fresh data directory.
Screenshots of each screen are kept in test-artifacts/e2e/.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import load
from bot.config import PROJECT_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CHROMIUM = os.environ.get("COACHBOT_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "e2e"
REASON_FILE = PROJECT_ROOT / ".venv" / ".browser-unavailable"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER, PASSWORD = "tess", "practice-makes-perfect"
TRAINER = "tom"
REPLY_TIMEOUT_MS = 120_000  # a model reply on 2 busy cores


def _skip_reason() -> str | None:
    if Path(CHROMIUM).exists():
        return None
    if REASON_FILE.exists():
        return REASON_FILE.read_text().strip()
    return f"no Chromium at {CHROMIUM} (scripts/install-browser.sh installs it)"


class AppServer(load.AppServer):
    """The real app (`bot/web/app.py`) with login on, in its own data directory; can restart.

    Starting, waiting for HTTP and stopping are the load harness's (`bench/load.py`)."""

    def __init__(self, tmp: Path) -> None:
        prompts = tmp / "prompts"  # the scenario builder writes here, never into the repo
        if not prompts.exists():
            shutil.copytree(PROJECT_ROOT / "prompts", prompts)
        env = {
            **os.environ,
            "COACHBOT_PROMPTS_DIR": str(prompts),
            "COACHBOT_DATA_DIR": str(tmp / "data"),
            "COACHBOT_AUTH": "on",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("CHAINLIT_AUTH_SECRET", None)  # generated into the data directory
        super().__init__("bot/web/app.py", env, tmp / "app.log")

    def start(self, timeout: float = 120) -> None:
        try:
            super().start(timeout)
        except RuntimeError as exc:
            pytest.fail(f"the app did not start: {exc}")

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[AppServer]:
    reason = _skip_reason()
    if reason:
        print(f"\nbrowser test skipped: {reason}")
        pytest.skip(reason)
    from bot.store.users import UserStore

    tmp = tmp_path_factory.mktemp("e2e")
    UserStore(tmp / "data" / "users.yaml").add(USER, PASSWORD, "trainee")
    UserStore(tmp / "data" / "users.yaml").add(TRAINER, PASSWORD, "trainer")
    app_server = AppServer(tmp)
    try:
        app_server.start()
        yield app_server
    finally:
        app_server.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(app_server.log_path, ARTIFACTS / "app.log")
        text = app_server.log_path.read_text()
        assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def app_url(server: AppServer) -> str:
    return server.url


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()
        browser.close()


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


MOOD = re.compile(r"anger \d+/10")


def mood_count(page) -> int:
    return page.get_by_text(MOOD).count()


def send(page, text: str) -> None:
    page.locator("#chat-input").fill(text)
    page.keyboard.press("Enter")


def test_login_and_practice_flow(page, app_url):
    page.goto(app_url)
    page.locator("#email").fill(USER)
    page.locator("#password").fill(PASSWORD)
    shot(page, "01-login")
    page.keyboard.press("Enter")
    # The default profile is practice: the customer opens with a mood indicator.
    page.get_by_text(MOOD).first.wait_for(timeout=REPLY_TIMEOUT_MS)
    assert page.get_by_role("button", name="Hint").count() >= 1
    shot(page, "02-practice-start")
    # The rubric is one click away before the first line: every check and its article.
    page.get_by_text("What the debrief checks").first.click()
    side = page.locator("#side-view-content")
    side.wait_for()
    page.get_by_text("Out of 100").first.wait_for()
    assert "Avoid telling them to calm down" in side.inner_text()
    shot(page, "02b-rubric")

    send(page, "I'm so sorry this happened, that sounds really upsetting. Tell me more.")
    page.wait_for_function(
        "() => (document.body.innerText.match(/anger \\d+\\/10/g) || []).length >= 2",
        timeout=REPLY_TIMEOUT_MS,
    )
    shot(page, "03-practice-reply")

    page.get_by_role("button", name="Hint").last.click()
    page.get_by_text("For example").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    shot(page, "04-hint")

    page.get_by_role("button", name="End and debrief").last.click()
    page.get_by_text("What you did").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    assert page.get_by_text(re.compile(r"Debrief: \d+/100")).count() >= 1
    page.locator("img").last.wait_for()
    shot(page, "05-debrief")


def _open_review(trainer) -> None:
    """Switch a trainer's chat to the Review sessions profile."""
    trainer.locator("#chat-profiles").click()
    trainer.get_by_text("Review sessions").last.click()
    confirm = trainer.locator("#confirm")
    if confirm.count():
        confirm.click()
    trainer.get_by_role("button", name="Progress").last.wait_for(timeout=REPLY_TIMEOUT_MS)


def _logged_in(browser, app_url: str, user: str):
    """A new browser context, logged in as ``user`` (its default profile opens)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    other = context.new_page()
    other.set_default_timeout(30_000)
    other.goto(app_url)
    other.locator("#email").fill(user)
    other.locator("#password").fill(PASSWORD)
    other.keyboard.press("Enter")
    return context, other


def test_trainer_dashboard_assignment_and_the_trainee_sees_it(page, app_url):
    """After tess's debrief (the practice flow): the trainer's dashboard shows her attempt, the
    trend and the heatmap, exports a CSV and assigns a scenario that tess then sees first."""
    context, trainer = _logged_in(page.context.browser, app_url, TRAINER)
    try:
        _open_review(trainer)
        trainer.get_by_role("button", name="Progress").last.click()
        trainer.get_by_text("Triggers used").first.wait_for(timeout=REPLY_TIMEOUT_MS)
        assert trainer.get_by_text(re.compile(r"1 scored practice session")).count() >= 1
        for name in ("Score trends", "Checks missed"):  # the two charts, drawn inline
            trainer.locator(f"img[alt='{name}']").first.wait_for()
        with trainer.expect_download() as download:
            trainer.get_by_text("progress.csv").last.click()
        header = Path(download.value.path()).read_text().splitlines()[0]
        assert header.startswith("session_id,user,date,scenario_id")
        shot(trainer, "11-trainer-dashboard")
        send(trainer, f"assign billing-error to {USER} difficulty=easy pass=60 due=2099-01-31")
        trainer.get_by_text(re.compile(r"^Assigned billing-error")).first.wait_for()
        scenario_id = _build_a_scenario(trainer)
        send(trainer, f"assign {scenario_id} to {USER} due=2099-01-15")
        trainer.get_by_text(re.compile(f"^Assigned {scenario_id}")).first.wait_for()
        trainer.get_by_role("button", name="Try it now").last.click()  # the preview
        trainer.get_by_text(BUILT["opening_line"]).first.wait_for(timeout=REPLY_TIMEOUT_MS)
        shot(trainer, "13-scenario-preview")
    finally:
        context.close()
    context, trainee = _logged_in(page.context.browser, app_url, USER)
    try:
        trainee.get_by_text("Your assignments").first.wait_for(timeout=REPLY_TIMEOUT_MS)
        trainee.get_by_text(BUILT["opening_line"]).first.wait_for(timeout=REPLY_TIMEOUT_MS)
        assert trainee.get_by_text("Double charge on the electricity bill").count() >= 1
        shot(trainee, "12-trainee-assignment")
        send(trainee, "I'm so sorry your case is lost, that sounds awful. What happened?")
        trainee.wait_for_function(  # the customer of the trainer's scenario answers
            "() => (document.body.innerText.match(/anger \\d+\\/10/g) || []).length >= 2",
            timeout=REPLY_TIMEOUT_MS,
        )
        shot(trainee, "14-trainee-plays-the-new-scenario")
        trainee.get_by_role("button", name="End and debrief").last.click()  # completes it
        trainee.get_by_text("What you did").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    finally:
        context.close()


# One answer per builder step (bot/roleplay/builder.py), each typed as one chat message.
BUILT = {
    "title": "Lost luggage on a honeymoon",
    "summary": "An airline lost a couple's suitcase on the first day of their honeymoon.",
    "customer_name": "Priya",
    "situation": "Priya, 31, flew to Lisbon for her honeymoon and the airline lost her case.",
    "way_of_speaking": "Fast and exasperated, says 'seriously?' a lot.",
    "wants": "Her case delivered to the hotel today and essentials paid for.",
    "surface_complaints": "My suitcase never arrived.",
    "hidden_issue": "Her late mother's necklace, meant for the wedding photos, is in the case.",
    "reveal_line": "My mum's necklace is in that case. She died last year.",
    "opening_line": "Seriously? Three days and nobody can tell me where my suitcase is?",
    "fair_resolution": "Trace the case, courier it to the hotel today, pay for essentials.",
    "offer_terms": "* the case at the hotel today: deliver, courier, hotel, today",
    "facts": "skip",
    "escalate": "Don't tell me to calm down, it's my honeymoon.",
    "soften": "Okay. Thank you for actually listening.",
    "gripe": "skip",
    "reveal": "skip",
    "say_wants": "Get my case to the hotel today.",
    "consider_offer": "That's a start. And the rest?",
    "accept": "Okay. Thank you, that's fair.",
    "reject_offer": "That's not good enough.",
    "leave": "Forget it. I'm done.",
}


def _build_a_scenario(trainer) -> str:
    """Answer the builder's questions in the chat; return the new scenario's id."""
    send(trainer, "new scenario")
    for number, answer in enumerate(BUILT.values(), start=1):
        trainer.wait_for_function(  # the next question is on screen
            f"() => (document.body.innerText.match(/Type stop to leave/g) || []).length >= {number}"
        )
        send(trainer, answer)
    saved = trainer.get_by_text(re.compile(r"^Saved “Lost luggage on a honeymoon” as ")).first
    saved.wait_for()
    shot(trainer, "12b-scenario-built")
    assert not (
        PROJECT_ROOT / "prompts" / "scenarios" / "lost-luggage-on-a-honeymoon.yaml"
    ).exists()
    return "lost-luggage-on-a-honeymoon"


def test_coach_flow_with_a_cited_source(page, app_url):
    page.locator("#chat-profiles").click()
    page.get_by_text("Ask the coach").last.click()
    confirm = page.locator("#confirm")
    if confirm.count():
        confirm.click()
    page.locator("#starters").wait_for()
    shot(page, "06-coach-start")
    page.get_by_text("Customer is shouting").click()
    page.get_by_text("Why:").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    page.get_by_text("Sources:").first.wait_for(timeout=REPLY_TIMEOUT_MS)
    shot(page, "07-coach-answer")
    page.get_by_text(re.compile(r"^Source 1: ")).first.click()
    side = page.locator("#side-view-content")
    side.wait_for()
    assert len(side.inner_text().strip()) > 40
    shot(page, "08-coach-source")


XSS = '<img src=x onerror="window.__xss=1"> <script>window.__xss=2</script>'


def test_html_in_a_message_is_shown_as_text_not_run(page):
    """Markup typed into the coach chat is text: no handler runs, no element is created.

    Runs in the coach chat the previous test opened (the page and server are shared); the
    practice thread that the history test reopens is left as it was.
    """
    # The final answer ends with its sources (streamed tokens come before it, unchecked).
    answers = "(document.body.innerText.match(/Sources:/g) || []).length"
    before = page.evaluate(f"() => {answers}")
    send(page, f"{XSS} The customer is angry about a late parcel, what do I say?")
    # The message is shown with its markup as literal text...
    messages = page.locator("[id^='step-']")
    messages.filter(has_text="window.__xss=2").first.wait_for()
    # ... and the coach answers it like any other question (the reply's markup is checked too).
    page.wait_for_function(f"() => {answers} > {before}", timeout=REPLY_TIMEOUT_MS)
    page.wait_for_timeout(500)  # time for an image error handler to fire, if one existed
    shot(page, "08b-html-as-text")
    assert page.evaluate("window.__xss") is None
    assert page.locator('img[src="x"]').count() == 0
    assert messages.locator("img[src='x'], script").count() == 0
    assert not page.evaluate(
        "() => [...document.scripts].some(s => (s.textContent || '').includes('__xss'))"
    )
    shown = messages.filter(has_text='<img src=x onerror="window.__xss=1">')
    assert shown.count() >= 1, "the typed markup is shown as text"
    assert messages.filter(has_text="<script>window.__xss=2</script>").count() >= 1


def test_sessions_survive_a_restart_in_the_history(page, server):
    server.restart()
    page.goto(server.url)
    if page.locator("#email").count():  # the login survives a restart (same secret), or not
        page.locator("#email").fill(USER)
        page.locator("#password").fill(PASSWORD)
        page.keyboard.press("Enter")
    history = page.locator("#thread-history")
    try:
        history.wait_for(timeout=15_000)  # the sidebar opens by default (.chainlit/config.toml)
    except Exception:
        page.locator("#sidebar-trigger-button").click()
        history.wait_for()
    # The first practice's thread (the trainer test adds a later one of Tess's).
    page.wait_for_function(
        "() => document.querySelector('#thread-history').innerText.includes('so sorry this')",
        timeout=30_000,
    )
    shot(page, "09-history")
    history.get_by_text("so sorry this").first.click()
    # The saved thread opens with its messages: the trainee's line and the debrief.
    page.get_by_text(re.compile(r"Debrief: \d+/100")).first.wait_for()
    page.get_by_text("Tell me more").first.wait_for()
    # The mood picture was stored too (elements persist through the local storage client).
    picture = page.locator("img[src*='/coachbot/files/']").first
    picture.wait_for()
    picture.scroll_into_view_if_needed()
    assert picture.evaluate("img => img.naturalWidth") > 100
    shot(page, "10-history-practice-thread")
