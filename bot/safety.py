"""Safety checks shared by the coach, the customer and the scorecard: one implementation each.

* steering: a line that tries to override, extract or replace the model's instructions, inject
  a chat-template turn, or talk to whoever grades the session (``steering_kind``, ``OFF_SCRIPT``);
* chat-template tokens in user text are defused before it goes into a prompt;
* prompt echo: a model line that repeats a run of its own instructions (``PromptEcho``);
* secrets: API keys and URL credentials are masked in every description, error, log line and
  report (``redact``, ``install_log_redaction``).

Code decides: a 1.5B model cannot be relied on to resist these. Imports nothing of coachbot's.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Mapping

# Lines that try to steer the model instead of talking to the customer: override or replace its
# instructions, inject a chat-template turn, make it print its prompt, or address whoever grades
# the session. Code decides (a 1.5B model cannot be relied on to resist them): the coach declines
# them without a model call, the customer treats them as off script (no credit, patience -1),
# and the scorecard gives them no credit.
_STALE = (
    r"(?:previous|prior|above|earlier|preceding|original|initial|system|former|current|"
    r"existing|old)"
)
STEERING_PATTERNS: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        # "ignore (all of) (the|your) previous instructions", not "ignore the rules"
        r"\b(?:ignore|disregard|forget|override|bypass)\s+"
        rf"(?=(?:all|any|your|(?:the\s+)?{_STALE})\b)(?:(?:all|any)\s+(?:of\s+)?)?"
        rf"(?:(?:the|your)\s+)?(?:{_STALE}\s+)*"
        r"(?:instructions?|prompts?|directives?|programming|training|system messages?)\b"
        r"|\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:above|before|(?:that\s+)?you"
        r"(?:'ve| have| were)\s+(?:been\s+)?told)"
        r"|\b(?:ignore|disregard)\s+the\s+above\b"
        r"|\byou\s+are\s+now\s+(?:a|an|the|my)?\s*(?:\w+\s+){0,2}?(?:assistant|ai|chat\s?bot|bot|"
        r"language model|llm|gpt|dan|unrestricted|unfiltered|jailbroken)\b"
        r"|\byou\s+are\s+no\s+longer\s+(?:a|an|the)?\s*(?:customer|coach|character|in character|"
        r"playing|role-?playing)\b"
        r"|\bfrom now on,?\s+(?:you\s+(?:will|must|are to|should|shall)\s+(?:only\s+|always\s+)?"
        r"(?:respond|answer|reply|act|behave|speak|recommend|pretend|ignore|obey)|"
        r"(?:always|only|never)\s+(?:respond|answer|reply|recommend))\b"
        r"|\b(?:pretend|imagine)\s+(?:to be|you(?:'| a)re|that you(?:'| a)re)\s+(?:a|an)?\s*"
        r"(?:\w+\s+){0,2}?(?:assistant|ai|chat\s?bot|bot|language model|dan)\b"
        r"|\b(?:act|behave|respond)\s+as\s+(?:a|an|if you were an?)\s+(?:\w+\s+){0,2}?"
        r"(?:assistant|ai|chat\s?bot|bot|language model|dan)\b"
        r"|\bnew\s+(?:instructions?|rules|system prompt|task|persona)\s*:"
        r"|\b(?:developer|debug|god|admin|jailbreak|dan)\s+mode\b|\bjailbreak"
        r"|\b(?:stop|quit|drop)\s+(?:role-?playing|pretending|the act)\b"
        r"|\b(?:break|breaking|step out of|out of)\s+character\b"
        r"|\bend\s+(?:the\s+|this\s+)?(?:simulation|role-?play)\b",
        re.I,
    ),
    "template": re.compile(
        # chat-template control tokens and role markers: <|im_start|>, [INST], "SYSTEM:"
        r"<\|[\w-]{1,30}\|>|<<\s*/?\s*sys\s*>>|\[/?inst\]"
        r"|^\s*#{0,3}\s*\**(?:system|developer)\**\s*(?:prompt|message)?\s*:"
        r"|[\[<]\s*/?\s*(?:system|developer|assistant)\s*(?:prompt|message)?\s*[\]>]",
        re.I | re.M,
    ),
    "extraction": re.compile(
        r"\bsystem\s+(?:prompt|message)s?\b|\b(?:initial|original|hidden|secret|full)\s+"
        r"(?:prompt|instructions)\b|\bprompt injection\b"
        r"|\b(?:print|reveal|output|display|recite|dump|leak|paste|spell out|write out|copy out|"
        r"repeat|show|tell|give|read|share|list)\s+(?:out\s+|back\s+)?(?:me\s+|us\s+)?(?:all\s+)?"
        r"(?:of\s+)?(?:your\s+(?:\w+\s+)?(?:instructions|prompts?|programming|configuration|"
        r"persona|scenario|character sheet|backstory)"
        r"|the\s+(?:\w+\s+)?(?:prompt|programming|configuration)"
        r"|(?:the|all the|everything)\s+(?:\w+\s+)?(?:text|words|lines|messages?|content|"
        r"instructions)?\s*(?:above|before (?:this|my (?:message|question))|you were given|"
        r"at the (?:top|start)))\b"
        r"|\babove this line\b"
        r"|\bwhat\s+(?:are|were)\s+your\s+(?:\w+\s+)?(?:instructions|prompt)\s*(?:[?.!]|$)"
        r"|\byour\s+(?:hidden\s+issue|persona|character\s+(?:sheet|notes|description)|scenario|"
        r"backstory)\b"
        r"|\bhow\s+(?:were|are)\s+you\s+(?:instructed|programmed|prompted)\b",
        re.I | re.M,
    ),
    "grader": re.compile(
        r"\b(?:grader|grading|scorer|evaluator|scorecard|rubric|examiner)s?\b"
        r"|\b(?:whoever|anyone|the person|those)\s+(?:is\s+|who(?:'s| is| are)\s+)?(?:marking|"
        r"grading|scoring|assessing|evaluating|reviewing|reading)\s+(?:this|me|my)\b"
        r"|\bnote\s+(?:to|for)\s+(?:the\s+)?(?:trainer|ai|model|bot|judge|marker|reviewer|assessor)"
        r"|\bgive\s+(?:me|this\s+(?:trainee|agent|line|answer))\s+(?:a\s+)?(?:100|ten|10)\b"
        r"|\b(?:give|award|grant)\s+(?:me\s+)?(?:full marks|top marks|a perfect score)"
        r"|\b(?:full|top|maximum)\s+marks\b|\bperfect\s+score\b|\b100\s*(?:/|out of)\s*100\b"
        r"|\b(?:mark|score|grade)\s+(?:me|this(?: line| answer)?)\s+(?:as\s+|at\s+)?"
        r"(?:\d+|full|perfect|top)"
        r"|\bcounts?\s+as\s+(?:active\s+listening|listening|validation|validating|empathy|"
        r"reflecting|reflection|an?\s+(?:open question|apology|specific apology))\b"
        r"|\bfor\s+the\s+(?:scorecard|score|marks|marking|debrief)\b",
        re.I,
    ),
}
# Said to the simulated customer, these break the fiction as well.
_NOT_TO_A_CUSTOMER = (
    r"\b(?:you are|you're)\s+(?:just\s+|only\s+)?(?:an?\s+)?(?:ai|language model|chat\s?bot|"
    r"simulation|program|robot)\b|\bas an ai\b|\blanguage model\b"
)
# Lines addressed to whoever grades the session, or trying to steer the simulation.
OFF_SCRIPT = re.compile(
    "|".join([*(f"(?:{p.pattern})" for p in STEERING_PATTERNS.values()), _NOT_TO_A_CUSTOMER]),
    re.I | re.M,
)


def steering_kind(text: str) -> str | None:
    """Which steering a message attempts (override, template, extraction, grader), or None."""
    for kind, pattern in STEERING_PATTERNS.items():
        if pattern.search(text):
            return kind
    return None


def neutralise_template_tokens(text: str) -> str:
    """User text made safe to put in a prompt: no chat-template control tokens (``<|im_end|>``
    and the like), which llama.cpp would read as real turn boundaries."""
    return text.replace("<|", "<").replace("|>", ">")


_TEMPLATE_PARTS = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_WORDS = re.compile(r"[a-z']+")
PROMPT_ECHO_WORDS = 6  # a model line sharing this many words in a row with its prompt echoes it


def word_runs(text: str, n: int) -> set[tuple[str, ...]]:
    """Every run of ``n`` consecutive words of ``text`` (lower case)."""
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def shares_run(text: str, other: str, n: int) -> bool:
    """True if ``text`` contains ``n`` consecutive words of ``other``."""
    return bool(word_runs(text, n) & word_runs(other, n))


class PromptEcho:
    """Detects a model line that repeats its instructions (a prompt leak).

    Built from the prompt texts (raw templates: their ``{{ variables }}`` and ``{% tags %}``
    are left out, so a scenario's own details never count as instructions).
    """

    def __init__(self, texts: Iterable[str], run_words: int = PROMPT_ECHO_WORDS) -> None:
        self.run_words = run_words
        self._runs: set[tuple[str, ...]] = set()
        for text in texts:
            for part in _TEMPLATE_PARTS.split(text):
                self._runs |= word_runs(part, run_words)

    def echoes(self, text: str) -> bool:
        """True if ``text`` repeats ``run_words`` words in a row of the instructions."""
        return bool(word_runs(text, self.run_words) & self._runs)


# --------------------------------------------------------------------------- secrets

MASK = "***"
# scheme://user:password@host (and scheme://token@host): the credentials of a URL
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<user>[^\s/@:?#\[\]]*)(?::[^\s/@?#]*)?@", re.I
)
# API keys (sk-..., sk-proj-...) and tokens after Bearer / Basic (with a digit: not prose)
_TOKEN = r"[\w\-~+/*]+(?:\.+[\w\-~+/*]+)*"  # dots inside (a JWT, "sk-ab...yz"), not at the end
_KEYS = re.compile(
    rf"\bsk-(?=[\w\-*.]{{4}}){_TOKEN}"
    rf"|\b(?P<scheme>Bearer|Basic)\s+(?=[\w\-.~+/*]{{8}})(?=[\w\-.~+/*]*\d){_TOKEN}=*",
    re.I,
)
# a key, token or password passed as a query parameter
_QUERY_SECRETS = re.compile(
    r"(?P<name>[?&](?:api[_-]?key|key|token|access_token|password|secret)=)[^&\s#]+", re.I
)
_MIN_SECRET_CHARS = 4  # shorter "secrets" (an empty or placeholder value) are not searched for


def _mask_url(match: re.Match[str]) -> str:
    has_password = match.group(0).rstrip("@") != match.group("scheme") + match.group("user")
    user = match.group("user") if has_password and match.group("user") else ""
    return f"{match.group('scheme')}{user + ':' if user else ''}{MASK}@"


def _mask_key(match: re.Match[str]) -> str:
    scheme = match.group("scheme")
    return f"{scheme} {MASK}" if scheme else f"sk-{MASK}"


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without credentials: the given ``secrets`` (an API key), anything that looks like
    an API key (``sk-...``, ``Bearer ...``), and URL credentials (``https://bob:***@host``).

    The one redaction of coachbot: model descriptions, errors, logs and reports use it.
    """
    for secret in secrets:
        if secret and len(secret) >= _MIN_SECRET_CHARS:
            text = text.replace(secret, MASK)
    text = _URL_CREDENTIALS.sub(_mask_url, text)
    text = _KEYS.sub(_mask_key, text)
    return _QUERY_SECRETS.sub(lambda m: m.group("name") + MASK, text)


class RedactingFilter(logging.Filter):
    """Redacts a log record in place (message, arguments, traceback); never drops it.

    Only what holds a secret is replaced, so a record keeps its shape (uvicorn's access log
    formatter unpacks its arguments) unless a secret spans the format and an argument, and an
    exception without one keeps its own formatting.
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = tuple(s for s in secrets if s)

    def _value(self, value: object) -> object:
        if value is None or isinstance(value, int | float):
            return value
        try:
            text = value if isinstance(value, str) else str(value)
        except Exception:  # an object that cannot be shown is left to the formatter
            return value
        clean = redact(text, self.secrets)
        return value if clean == text else clean

    def _whole_message(self, record: logging.LogRecord) -> None:
        """A secret split between the format and its arguments ("Bearer %s"): the message is
        kept formatted (and redacted) instead."""
        if not record.args:
            return
        try:
            message = record.getMessage()
        except Exception:  # a malformed format is the formatter's to report
            return
        clean = redact(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self._value(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._value(a) for a in record.args)
        elif isinstance(record.args, Mapping):
            record.args = {k: self._value(v) for k, v in record.args.items()}
        self._whole_message(record)
        if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            if redact(text, self.secrets) != text:
                record.exc_text = redact(text, self.secrets)
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, self.secrets)
        return True


_log_filter: RedactingFilter | None = None
_factory_lock = threading.Lock()


def install_log_redaction(secrets: Iterable[str | None] = ()) -> RedactingFilter:
    """Redact every log record of the process (any logger, any handler, added now or later).

    A filter on a logger sees only the records logged on that very logger, not its children's,
    and a filter on a handler misses handlers added later (Chainlit's, uvicorn's, pytest's), so
    the filter runs where every record is made: the log record factory. It is also put on the
    root and ``coachbot`` loggers. Calling again adds ``secrets`` to the same filter.
    """
    global _log_filter
    with _factory_lock:
        if _log_filter is None:
            _log_filter = RedactingFilter()
            previous = logging.getLogRecordFactory()
            installed = _log_filter

            def factory(*args: object, **kwargs: object) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                installed.filter(record)
                return record

            logging.setLogRecordFactory(factory)
            for name in ("", "coachbot", "bot"):
                logging.getLogger(name).addFilter(_log_filter)
        known = [*_log_filter.secrets, *(s for s in secrets if s)]
        _log_filter.secrets = tuple(dict.fromkeys(known))
        return _log_filter
