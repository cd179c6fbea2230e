"""A plain multi-turn chat with the configured model, trimmed to a token budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from bot.inputs import CleanInput, clean_user_text
from bot.llm import model_notice
from bot.llm.tokens import count_tokens


def model_token_counter(model: BaseChatModel) -> Callable[[str], int]:
    """Count with the model's own tokenizer when it has one (local), else tiktoken."""
    if getattr(model, "_llm_type", "") == "coachbot-llama-cpp":
        return model.get_num_tokens
    return count_tokens


@dataclass
class ChatSession:
    """History plus a budget: the oldest turns are dropped first when the prompt grows too long."""

    model: BaseChatModel
    system_prompt: str
    context_tokens: int = 4096
    reply_tokens: int = 256
    max_input_tokens: int = 1024
    history: list[BaseMessage] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # from the model, e.g. a fallback

    def __post_init__(self) -> None:
        self._count = model_token_counter(self.model)

    def prepare(self, text: str) -> CleanInput:
        """Validate and cut the user's message (raises EmptyInputError on empty input)."""
        return clean_user_text(text, self.max_input_tokens, self._count)

    def _messages(self, user_text: str) -> list[BaseMessage]:
        budget = self.context_tokens - self.reply_tokens - self._count(self.system_prompt)
        budget -= self._count(user_text) + 16
        kept: list[BaseMessage] = []
        for message in reversed(self.history):
            cost = self._count(str(message.content)) + 8
            if cost > budget:
                break
            kept.insert(0, message)
            budget -= cost
        return [SystemMessage(self.system_prompt), *kept, HumanMessage(user_text)]

    def stream_reply(self, user_text: str) -> Iterator[str]:
        """Stream the reply to an already-prepared message; history is updated when it ends."""
        parts: list[str] = []
        for chunk in self.model.stream(self._messages(user_text)):
            if notice := model_notice(chunk):
                self.notices.append(notice)
            piece = str(chunk.content)
            if piece:
                parts.append(piece)
                yield piece
        self.history += [HumanMessage(user_text), AIMessage("".join(parts).strip())]

    def reset(self) -> None:
        self.history.clear()
