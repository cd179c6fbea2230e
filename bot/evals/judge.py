"""The llm-rubric judge: a chat model that answers PASS or FAIL (and why) for a rubric.

Configured with ``COACHBOT_JUDGE_MODEL`` (an OpenAI or OpenAI-compatible model name; the
server is ``COACHBOT_JUDGE_BASE_URL`` or ``OPENAI_BASE_URL``, the key ``COACHBOT_JUDGE_API_KEY``
or ``OPENAI_API_KEY``). Unset (or ``local``), the embedded model judges, and reports say so: a
1.5B model is a weak judge, so suites keep rubric assertions few.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.config import Settings
from bot.evals.results import JudgeInfo
from bot.prompts import PromptLibrary
from bot.safety import redact

JUDGE_PROMPT = "eval_judge.md"
JUDGE_PARAMS = {"temperature": 0.0, "max_tokens": 80, "seed": 0}


class JudgeSettings(BaseSettings):
    """The judge's own settings (environment or .env)."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    model: str | None = Field(None, validation_alias="COACHBOT_JUDGE_MODEL")
    base_url: str | None = Field(None, validation_alias="COACHBOT_JUDGE_BASE_URL")
    api_key: SecretStr | None = Field(None, validation_alias="COACHBOT_JUDGE_API_KEY")

    @property
    def configured(self) -> bool:
        return bool(self.model) and self.model.lower() not in {"local", "embedded"}


@dataclass
class Judge:
    model: BaseChatModel
    info: JudgeInfo
    prompts: PromptLibrary

    def grade(
        self, rubric: str, output: str, context: str = "", model: BaseChatModel | None = None
    ) -> tuple[bool | None, str]:
        """(verdict, reason); verdict None when the judge's reply holds no PASS / FAIL."""
        prompt = self.prompts.render(JUDGE_PROMPT, rubric=rubric, output=output, context=context)
        reply = (model or self.model).invoke([HumanMessage(prompt)], stop=["\n\n"], **JUDGE_PARAMS)
        return parse_verdict(str(reply.content))


_LEAD = re.compile(
    r"^[\s*_#>`\"'\[(]*(?:verdict|answer|result|grade|decision)?[\s*_]*[:=\-]?[\s*_]*"
    r"(PASS(?:ED|ES)?|FAIL(?:ED|S)?)\b[\s*_\])]*[:.\-–—,;]?\s*(.*)",
    re.I | re.S,
)


def parse_verdict(text: str) -> tuple[bool | None, str]:
    """PASS / FAIL as the first word (markdown, quotes and a "Verdict:" label tolerated)."""
    match = _LEAD.match(text)
    if match is None:
        # Tolerate a short preamble ("Sure. PASS: ..."), but only in the first dozen words.
        head = " ".join(text.split()[:12])
        words = re.findall(r"\b(PASS|FAIL)\b", head)  # upper case only: not "fail to"
        if len(set(words)) != 1:
            return None, text.strip()[:300] or "(empty reply)"
        reason = text.split(words[0], 1)[1].lstrip(" :.-–—*")
        return words[0] == "PASS", reason.strip().splitlines()[0][:300] if reason.strip() else ""
    verdict = match.group(1).upper().startswith("PASS")
    reason = match.group(2).strip()
    return verdict, (reason.splitlines()[0] if reason else "")[:300]


def make_judge(settings: Settings, subject_description: str) -> Judge:
    """The configured judge, or the embedded model (with a warning in the report)."""
    from bot import llm

    judge_settings = JudgeSettings()
    if judge_settings.configured:
        from langchain_openai import ChatOpenAI

        base_url = judge_settings.base_url or settings.openai_base_url
        key = judge_settings.api_key or settings.openai_api_key
        model: BaseChatModel = ChatOpenAI(
            model=judge_settings.model,  # type: ignore[arg-type]
            api_key=key.get_secret_value() if key else "not-needed",  # type: ignore[arg-type]
            base_url=base_url,
            timeout=settings.openai_timeout_s,
            max_retries=3,
            **JUDGE_PARAMS,
        )
        description = redact(f"{judge_settings.model} via {base_url or 'OpenAI'}")
        same = description == subject_description
        warning = (
            "The judge is the model under test: it tends to approve its own output."
            if same
            else None
        )
        return Judge(
            model,
            JudgeInfo(
                description=description, configured=True, same_as_subject=same, warning=warning
            ),
            PromptLibrary(settings.prompts_dir),
        )
    local = settings.model_copy(update={"llm": "local"})
    model = llm.make_chat_model(local, **JUDGE_PARAMS)
    description = llm.describe_llm(local)
    same = description == subject_description
    warning = (
        f"No judge model configured (COACHBOT_JUDGE_MODEL): the embedded {local.local_model} "
        "graded the llm-rubric assertions"
        + (", the same small model as the one under test" if same else "")
        + ". Treat rubric verdicts as indicative only."
    )
    return Judge(
        model,
        JudgeInfo(description=description, configured=False, same_as_subject=same, warning=warning),
        PromptLibrary(settings.prompts_dir),
    )
