"""The real Chainlit app on a fake, deterministic chat model (the target of `bench/load.py`).

Run with ``python -m chainlit run bench/load_app.py --headless`` from the project root. Every
handler of :mod:`bot.web.app` (and its startup hook, which sets up login and the data layer) is
registered by importing it; only the chat model is replaced, so retrieval, guidance, the
customer's rules, saving and Chainlit's data layer all run for real.

The fake streams word by word, sleeping ``COACHBOT_FAKE_TOKEN_DELAY`` seconds (default 0.02)
before each token, so replies take time and sessions overlap as they would on a real model.
Coach prompts get a "Say: ... / Why: ... [1]" answer built from the prompt's own line to adapt
and first passage; customer prompts get one line of dialogue built from the beat's instruction
(the simulator's checks reject some of them, which exercises its retries and fallback lines).

With ``COACHBOT_FAKE_DB_OUTAGE_FLAG=<path>`` (``bench/load.py --db-outage``), every statement of
the session store fails as a stopped database does while that file exists.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult

import bot.web.app
from bot.config import get_settings
from bot.service import Services
from bot.store.faults import DatabaseOutage
from bot.store.sessions import SessionStore

DEFAULT_TOKEN_DELAY = 0.02

_LINE_TO_ADAPT = re.compile(r'^Line to adapt: "(.*)"\s*$', re.M)
_FIRST_PASSAGE = re.compile(r"^\[1\] (.+)$", re.M)
_NEXT = re.compile(r"^Next, (.+)$", re.M)

_ANGRIER = (
    "Don't talk to me like that. It only makes this worse.",
    "That is exactly the kind of answer that makes me angrier.",
    "Seriously? That's all you have to say to me right now?",
)
_STILL_UPSET = (
    "I still want this put right properly, and I want it done today.",
    "Fine, you're listening, but I still need this sorted out today.",
    "I just want somebody to fix this for me without any more excuses.",
)
_ACCEPT = ("Okay, that works for me. Thanks for sorting it out.", "Alright, that's fair, deal.")
_LEAVE = ("Forget it, I'm done. I'm taking this further.", "That's it, I'm going elsewhere.")


def token_delay() -> float:
    """Seconds before each streamed token (``COACHBOT_FAKE_TOKEN_DELAY``, default 0.02)."""
    return float(os.environ.get("COACHBOT_FAKE_TOKEN_DELAY", DEFAULT_TOKEN_DELAY))


def _pick(options: tuple[str, ...], seed: int) -> str:
    return options[seed % len(options)]


def coach_reply(prompt: str) -> str:
    """A well-formed coach answer: the catalogue line to adapt and the first passage, cited."""
    line = _LINE_TO_ADAPT.search(prompt)
    passage = _FIRST_PASSAGE.search(prompt)
    say = line.group(1) if line else "I can hear how upsetting this has been for you."
    why = " ".join((passage.group(1) if passage else "It helps them feel heard.").split()[:24])
    return f'Say: "{say}"\nWhy: {why.rstrip(" .…")} [1].'


def customer_reply(prompt: str, seed: int) -> str:
    """One line of dialogue for the beat the simulator asked for (its "Next, ..." line)."""
    found = _NEXT.findall(prompt)
    instruction = found[-1] if found else ""
    if "complains about this:" in instruction:
        return "Honestly? " + instruction.split("complains about this:", 1)[1].strip()
    if "accepts the offer" in instruction:
        return _pick(_ACCEPT, seed)
    if "ends the conversation" in instruction:
        return _pick(_LEAVE, seed)
    if "angrier" in instruction or "confused and annoyed" in instruction:
        return _pick(_ANGRIER, seed)
    return _pick(_STILL_UPSET, seed)


class FakeStreamingChatModel(BaseChatModel):
    """A deterministic chat model that streams plausible coach or customer replies slowly."""

    delay: float = DEFAULT_TOKEN_DELAY

    @property
    def _llm_type(self) -> str:
        return "coachbot-fake-streaming"

    def reply(self, messages: list[BaseMessage], seed: int = 0) -> str:
        """The whole reply to ``messages`` (coach prompts name a line to adapt)."""
        text = "\n".join(str(m.content) for m in messages)
        if "Line to adapt:" in text:
            if "That Say line is not usable" in str(messages[-1].content):
                return coach_reply(text).split("\n", 1)[0]  # a retry asks for the Say line only
            return coach_reply(text)
        return customer_reply(str(messages[-1].content), seed)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self.reply(messages, int(kwargs.get("seed") or 0))
        for piece in re.findall(r"\S+\s*", text):
            if self.delay > 0:
                time.sleep(self.delay)
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = "".join(str(c.message.content) for c in self._stream(messages, stop, None, **kwargs))
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])


# Before Chainlit starts the server: the app's startup hook configures login and history from
# these services' settings.
def outage_store() -> SessionStore | None:
    """The session store, failing while ``COACHBOT_FAKE_DB_OUTAGE_FLAG`` names a file that
    exists (None without the variable: the app opens its store itself)."""
    flag = os.environ.get("COACHBOT_FAKE_DB_OUTAGE_FLAG")
    if not flag:
        return None
    store = SessionStore.from_settings(get_settings())
    DatabaseOutage(store.engine, flag=Path(flag))
    return store


bot.web.app.use_services(
    Services(
        get_settings(), model=FakeStreamingChatModel(delay=token_delay()), store=outage_store()
    )
)
