"""The application service: shared resources and the two kinds of session, with saving.

Every interface (the Chainlit app, the CLI, tests) drives practice and coaching through
:class:`PracticeRun` and :class:`CoachRun`, so nothing the UI can do is out of the CLI's or the
tests' reach. Resources (chat models, the knowledge index, the guidance engine, scenarios, the
session store) are built once per process by :class:`Services`, lazily, and can be injected
(tests pass a fake chat model).

Saving never blocks the conversation: every save is a :class:`~bot.store.journal.Write` handed
to :class:`~bot.store.journal.DurableWrites`; one the database refuses waits in the journal in
the data directory (replayed at start, every ``COACHBOT_JOURNAL_FLUSH_S`` seconds, and at
shutdown) and is reported as a notice, so nothing is silently dropped.

A practice session plays one turn at a time: a hint or the debrief asked for during a reply
waits for it, and the scorecard is made from a snapshot of the finished transcript.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from bot.coach.coach import Coach
from bot.coach.models import CoachAnswer, CoachEvent
from bot.config import PROJECT_ROOT, Settings
from bot.errors import CoachbotError
from bot.guidance.catalogue import GuidanceCatalogue, load_catalogue
from bot.guidance.engine import GuidanceEngine, load_training
from bot.inputs import clean_user_text
from bot.llm.capacity import Admission, budget_when
from bot.llm.chat import ChatSession
from bot.llm.queue import PositionCallback
from bot.llm.tokens import count_tokens
from bot.prompts import PromptLibrary
from bot.roleplay.acts import ActCatalogue, load_acts
from bot.roleplay.assignments import (
    Assignment,
    AssignmentStatus,
    NewAssignment,
    assignment_status,
)
from bot.roleplay.builder import QUESTIONS_FILE, build, scenario_yaml, slug
from bot.roleplay.models import Hint, Transcript, Turn
from bot.roleplay.progress import (
    Attempt,
    ProgressReport,
    attempt_from_scorecard,
    progress_report,
)
from bot.roleplay.scenarios import (
    DIFFICULTIES,
    Scenario,
    load_scenarios,
    require_difficulty,
)
from bot.roleplay.scoring import Rubric, Scorecard, check_labels, rubric, score_transcript
from bot.roleplay.simulator import CustomerSimulator
from bot.roleplay.voice import (
    load_voice_lines,
    scenario_customer_lines,
    trained_voice_classifier,
)
from bot.store.journal import (
    DurableWrites,
    SaveResult,
    Write,
    coach_exchange_write,
    feedback_write,
    practice_write,
    start_write,
)
from bot.store.sessions import EVERY_TRAINEE, GROUP_PREFIX
from bot.store.users import UserStore

# The shipped articles' reviewed passage questions, found by content hash wherever they are.
SHIPPED_QUESTIONS = PROJECT_ROOT / "knowledge" / "passage_questions.yaml"
MAX_LINE_TOKENS = 200  # a trainee line longer than this is cut, with a notice
MODEL_FAILED = (
    "The model did not answer — {reason} — so the customer's line is a trainer-written one. "
    "Carry on: your session is intact."
)
NO_LOGIN = "(no login)"  # the trainee of a session saved without a login (the CLI)
SAVE_FAILED = (
    "Saving to the database failed; this session is kept on this server and will be saved when "
    "the database is back."
)
SAVE_REFUSED = (
    "The database refused to save part of this session; it is kept for an administrator in the "
    "server's dead-letter file. Carry on: the rest is saved as usual."
)

GRAMMAR_FILE = "customer_line.gbnf"  # the customer line grammar, in prompts/


class Services:
    """Process-wide resources, built on first use (thread-safe).

    ``embeddings`` are the knowledge index's, when it is built here (default: the ones the
    settings select); the eval runner passes cached ones.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model: BaseChatModel | None = None,
        customer_model: BaseChatModel | None = None,
        index: Any = None,
        guidance: GuidanceEngine | None = None,
        store: Any = None,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.settings = settings
        self._model = model
        self._customer_model = customer_model or model
        self._index = index
        self._embeddings = embeddings
        self._guidance = guidance
        self._store = store
        self._writes: DurableWrites | None = None
        self._lock = threading.RLock()

    @property
    def model(self) -> BaseChatModel:
        with self._lock:
            if self._model is None:
                from bot.llm import make_chat_model

                self._model = make_chat_model(self.settings)
            return self._model

    @property
    def customer_model(self) -> BaseChatModel:
        with self._lock:
            if self._customer_model is None:
                from bot.llm import make_chat_model

                self._customer_model = make_chat_model(self.settings, temperature=0.8)
            return self._customer_model

    @cached_property
    def prompts(self) -> PromptLibrary:
        """Every prompt and fixed message, from ``settings.prompts_dir``."""
        return PromptLibrary(self.settings.prompts_dir)

    @cached_property
    def trainee_acts(self) -> ActCatalogue:
        """What a trainee line does as a move (``trainee_acts.yaml`` of the knowledge folder, or
        the shipped one when a company's own knowledge folder has none)."""
        path = self.settings.knowledge_dir / "trainee_acts.yaml"
        if not path.is_file():
            path = PROJECT_ROOT / "knowledge" / "trainee_acts.yaml"
        return load_acts(path)

    @property
    def guidance(self) -> GuidanceEngine:
        with self._lock:
            if self._guidance is None:
                from bot.guidance.engine import default_engine

                self._guidance = default_engine(
                    self.settings.knowledge_dir / "guidance.yaml",
                    cache_dir=self.settings.cache_dir,
                    training=self.settings.guidance_training,
                )
                self._guidance.warm_up()
            return self._guidance

    @property
    def index(self) -> Any:
        with self._lock:
            if self._index is None:
                index = self.knowledge_index()
                index.ingest()  # incremental: an unchanged knowledge base costs milliseconds
                self._index = index
            return self._index

    def knowledge_index(self) -> Any:
        """A new knowledge index from the settings, not yet ingested. Passages are matched also
        by the questions they answer: reviewed ones shipped in knowledge/, cached ones, and
        (``COACHBOT_PASSAGE_QUESTIONS``) ones the chat model writes for a new passage."""
        from bot.knowledge import KnowledgeIndex
        from bot.knowledge.questions import PassageQuestions

        questions = PassageQuestions(
            self.prompts,
            reviewed=[SHIPPED_QUESTIONS, self.settings.knowledge_dir / "passage_questions.yaml"],
            cache_dir=self.settings.cache_dir,
            model=(lambda: self.model) if self.settings.passage_questions else None,
        )
        given = {"embeddings": self._embeddings} if self._embeddings is not None else {}
        return KnowledgeIndex(self.settings, questions=questions, **given)

    @property
    def store(self) -> Any:
        with self._lock:
            if self._store is None:
                from bot.store.sessions import SessionStore

                self._store = SessionStore.from_settings(self.settings)
            return self._store

    @property
    def writes(self) -> DurableWrites:
        """Every save goes through here: to the store, or the journal in the data directory
        while the database refuses it (:meth:`DurableWrites.start` replays it, the app calls
        it at startup)."""
        with self._lock:
            if self._writes is None:
                self._writes = DurableWrites.in_dir(
                    self.settings.data_dir,
                    lambda: self.store,
                    interval_s=self.settings.journal_flush_s,
                )
            return self._writes

    def record_feedback(
        self,
        *,
        thread_id: str,
        step_id: str,
        value: int,
        comment: str | None = None,
        user: str | None = None,
    ) -> SaveResult:
        """A thumb on a message, saved like every other write (journalled while the database
        is away)."""
        write = feedback_write(
            thread_id=thread_id, step_id=step_id, value=value, comment=comment, user=user
        )
        return self.writes.submit(write)

    @cached_property
    def scenarios(self) -> dict[str, Scenario]:
        found, _problems = load_scenarios(self.settings.prompts_dir / "scenarios")
        if not found:
            raise CoachbotError(
                f"no usable scenarios in {self.settings.prompts_dir / 'scenarios'}",
                hint="run `coachbot scenarios` to see why each file was skipped",
            )
        return found

    # ------------------------------------------------------------------ scenario builder

    def builder_question(self, step_key: str) -> str:
        """The scenario builder's question for one step (prompts/scenario_builder.yaml)."""
        return self.prompts.message(QUESTIONS_FILE, step_key)

    def build_scenario(self, answers: dict[str, Any]) -> tuple[Scenario | None, dict[str, str]]:
        """A validated scenario from the builder's answers (a new id from its title), or the
        problems by step."""
        return build(answers, slug(str(answers.get("title") or ""), set(self.scenarios)))

    def save_scenario(self, scenario: Scenario) -> Path:
        """Write a new scenario into the scenarios folder; every later session sees it."""
        folder = self.settings.prompts_dir / "scenarios"
        path = folder / f"{scenario.id}.yaml"
        if scenario.id in self.scenarios or path.exists():
            raise CoachbotError(f"a scenario with id {scenario.id!r} exists already")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(scenario_yaml(scenario), encoding="utf-8")
        except OSError as exc:
            raise CoachbotError(f"cannot write {path}: {exc.strerror}") from exc
        self.__dict__.pop("scenarios", None)  # read again, with the new one
        return path

    def rubric(self) -> Rubric:
        """What the debrief checks, for a trainee to read before a session (reads only the
        catalogue: no classifier is trained for it)."""
        return rubric(self._catalogue())

    def progress(self, **filters: Any) -> ProgressReport:
        """Trainees' progress over scored practice sessions (``filters``: user, scenario_id,
        difficulty, since, until; see :meth:`SessionStore.scored_practice`)."""
        attempts, unreadable = self._attempts(**filters)
        report = progress_report(attempts, check_labels(self._catalogue()))
        return report.model_copy(update={"unreadable": unreadable})

    def _attempts(self, **filters: Any) -> tuple[list[Attempt], int]:
        """The scored practice sessions as attempts, and how many could not be read."""
        attempts, unreadable = [], 0
        for record in self.store.scored_practice(**filters):
            try:
                card = record.scorecard()
                transcript = record.transcript()
            except ValueError:  # a payload from another version: counted, not shown
                card = transcript = None
            if card is None:
                unreadable += 1
                continue
            attempts.append(
                attempt_from_scorecard(
                    card,
                    session_id=record.id,
                    user=record.user or NO_LOGIN,
                    scenario_id=record.scenario_id or "",
                    scenario_title=record.scenario_title or record.scenario_id or "",
                    difficulty=record.difficulty or "",
                    at=record.created_at,
                    scenario_version=transcript.scenario_version if transcript else None,
                )
            )
        return attempts, unreadable

    # ------------------------------------------------------------------ assignments

    def assign(self, wanted: NewAssignment) -> Assignment:
        """Set a scenario for a trainee, a group or every trainee, checked against the
        scenarios and, when logins are on, the users."""
        scenario_id, difficulty, assignee = wanted.scenario_id, wanted.difficulty, wanted.assignee
        if scenario_id not in self.scenarios:
            known = ", ".join(sorted(self.scenarios))
            raise CoachbotError(f"no scenario {scenario_id!r}", hint=f"one of: {known}")
        require_difficulty(difficulty)
        users = UserStore(self.settings.users_path)
        if assignee.startswith(GROUP_PREFIX):
            group = assignee.removeprefix(GROUP_PREFIX)
            if not any(group in u.groups for u in users.list()):
                raise CoachbotError(
                    f"no user is in group {group!r}", hint="set groups with `coachbot users groups`"
                )
        elif assignee != EVERY_TRAINEE and users.has_users() and users.get(assignee) is None:
            raise CoachbotError(
                f"no user {assignee!r}", hint="see `coachbot users list`, or assign to everyone"
            )
        return self.store.add_assignment(wanted)

    def assignment_statuses(self, user: str | None = None) -> list[AssignmentStatus]:
        """Each trainee's standing on each assignment (``user``: only theirs), due soonest
        first. An assignment for every trainee is shown for each trainee with a login, or for
        each who has practised when logins are off."""
        users = UserStore(self.settings.users_path).list()
        if user is None:
            assignments = self.store.assignments()
        else:
            groups = next((u.groups for u in users if u.identifier == user), [])
            targets = [user, EVERY_TRAINEE, *(f"{GROUP_PREFIX}{g}" for g in groups)]
            assignments = self.store.assignments(targets)
        if not assignments:
            return []
        attempts, _ = self._attempts(user=user)  # no heatmap needed here
        now = datetime.now(UTC)
        statuses = []
        for assignment in assignments:
            who = [user] if user else self._assignees(assignment.assignee, users, attempts)
            statuses += [assignment_status(assignment, t, attempts, now) for t in who]
        return statuses

    @staticmethod
    def _assignees(assignee: str, users: list[Any], attempts: list[Any]) -> list[str]:
        """Who an assignment is for: a user; a group's users; every trainee with a login (or,
        with logins off, everyone who has practised)."""
        if assignee.startswith(GROUP_PREFIX):
            group = assignee.removeprefix(GROUP_PREFIX)
            return [u.identifier for u in users if group in u.groups]
        if assignee != EVERY_TRAINEE:
            return [assignee]
        if users:
            return [u.identifier for u in users if u.role == "trainee"]
        return sorted({a.user for a in attempts})

    def _catalogue(self) -> GuidanceCatalogue:
        """The guidance catalogue: the engine's if loaded, else read (no classifier trained)."""
        with self._lock:
            engine = self._guidance
        if engine is not None:
            return engine.catalogue
        return load_catalogue(self.settings.knowledge_dir / "guidance.yaml")

    def coach(self, model: BaseChatModel | None = None, **options: Any) -> Coach:
        """A coach over the shared index and guidance (``model`` replaces the configured one)."""
        return Coach(
            model or self.model, self.index, self.guidance, prompts=self.prompts, **options
        )

    def chat_session(self) -> ChatSession:
        """A plain chat with the configured model (``coachbot chat``)."""
        return ChatSession(
            model=self.model,
            system_prompt=self.prompts.render("chat_system.md"),
            context_tokens=self.settings.local_context,
        )

    def customer(
        self,
        scenario_id: str,
        difficulty: str = "medium",
        seed: int = 0,
        model: BaseChatModel | None = None,
        attempts: int | None = None,
    ) -> CustomerSimulator:
        """A simulated customer for one scenario (``model`` replaces the configured one;
        ``attempts`` fixes the model attempts per line, else they follow the queue)."""
        if scenario_id not in self.scenarios:
            known = ", ".join(sorted(self.scenarios))
            raise CoachbotError(f"unknown scenario {scenario_id!r}", hint=f"choose one of {known}")
        if difficulty not in DIFFICULTIES:
            raise CoachbotError(f"unknown difficulty {difficulty!r}", hint="easy, medium or hard")
        return CustomerSimulator(
            self.scenarios[scenario_id],
            model or self.customer_model,
            self.guidance,
            difficulty,  # type: ignore[arg-type]
            seed,
            prompts=self.prompts,
            acts=self.trainee_acts,
            attempt_budget=self._attempt_budget(model, attempts),
            # evals and benches pass their own model and get the same attempts every run
            retry_window_s=self.settings.customer_retry_window_s if model is None else None,
            line_sent_at=self._line_sent_at() if model is None else None,
            voice=self.voice_check,
            line_grammar=self._customer_grammar(model or self.customer_model),
            reply_mode=self.settings.customer_reply,
        )

    def _customer_grammar(self, model: BaseChatModel) -> str | None:
        """prompts/customer_line.gbnf for the embedded model (llama.cpp samples under it; an
        API model is never sent one: OpenAI rejects the field), unless turned off."""
        from bot.llm.local_chat import LocalChatModel

        if not self.settings.customer_grammar or not isinstance(model, LocalChatModel):
            return None
        return self.prompts.source(GRAMMAR_FILE) or None

    @cached_property
    def voice_check(self) -> Callable[[str], bool] | None:
        """True for a customer line in an agent's voice: a classifier trained on
        ``COACHBOT_VOICE_TRAINING``, the scenarios' own customer lines and the guidance
        training lines (every one a trainee's, so an agent's); None when it is off."""
        path = self.settings.voice_training
        if path is None:
            return None
        labelled = load_voice_lines(path)
        customer = [line.text for line in labelled if line.label == "customer"]
        agent = [line.text for line in labelled if line.label == "agent"]
        customer += scenario_customer_lines(self.scenarios.values())
        if self.settings.guidance_training is not None:
            agent += [line.text for line in load_training(self.settings.guidance_training)]
        return trained_voice_classifier(tuple(customer), tuple(agent)).is_agent

    def _line_sent_at(self) -> Callable[[], float | None] | None:
        """When the turn in progress joined the embedded model's queue (None: no queue)."""
        queue = self.model_queue
        return queue.waiting_since if queue is not None else None

    def _attempt_budget(
        self, model: BaseChatModel | None, attempts: int | None
    ) -> Callable[[], int] | None:
        """``attempts`` if given; with the configured embedded model, fewer attempts per
        customer line while other turns wait for it: one less for each waiting turn, down to
        the trainer's line at once."""
        if attempts is not None:
            return lambda: attempts
        if model is not None:
            return None
        queue = self.model_queue
        if queue is None:
            return None
        return lambda: budget_when(queue.snapshot().waiting)

    # ------------------------------------------------------------------ a classroom on one box

    def model_slot(
        self, owner: str, on_position: PositionCallback | None = None
    ) -> AbstractContextManager[None]:
        """Hold the embedded model for one whole turn, waiting in its first-come, first-served
        queue (``on_position(n)``: n turns ahead). Every model call inside goes straight on, so
        a turn's retries and candidates stay together. A no-op with an API model: its server
        does the queueing."""
        queue = self.model_queue
        return queue.hold(owner, on_position) if queue is not None else nullcontext()

    @property
    def local_engine(self) -> Any:
        """The embedded model's engine (None with an API model; loads the local model)."""
        return getattr(self.customer_model, "engine", None)

    @property
    def model_queue(self) -> Any:
        """The embedded model's queue (None with an API model; loads the local model)."""
        return getattr(self.local_engine, "queue", None)

    @property
    def capacity_file(self) -> Path:
        """Where ``coachbot capacity`` records what it measured on this machine."""
        return self.settings.data_dir / "capacity.json"

    def measured_capacity(self) -> dict[str, Any] | None:
        """The last ``coachbot capacity`` result for this machine and model, if any."""
        try:
            found = json.loads(self.capacity_file.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(found, dict) or found.get("model") != self.settings.local_model:
            return None
        return found

    @cached_property
    def classroom(self) -> Admission:
        """Practice sessions admitted at once: ``COACHBOT_MAX_TRAINEES``, else what ``coachbot
        capacity`` measured for the embedded model, else no limit."""
        limit = self.settings.max_trainees
        if limit is None and self.settings.llm_provider != "openai":
            measured = self.measured_capacity()
            # one trainee is always admitted, even on a machine too slow for the target
            limit = max(1, int(measured["trainees"])) if measured else None
        return Admission(limit)

    def time_practice_turns(
        self, scripts: Mapping[str, Sequence[str]], seed: int = 1, attempts: int | None = None
    ) -> list[float]:
        """Seconds per practice turn, with the scripted sessions taking turns (each turn holds
        the model as in the app, and restores its own prefix after the others' turns), each
        line allowed ``attempts`` model attempts (default: as the queue gives)."""
        engine = self.local_engine
        if engine is not None:  # every budget starts as the app does: scenario prompts read
            with self.model_slot("capacity"):
                engine.forget_prefixes()
            self.warm_customer_prefixes(list(scripts))
        runs = {sid: self.customer(sid, "medium", seed, attempts=attempts) for sid in scripts}
        seconds: list[float] = []
        for number in range(max(len(lines) for lines in scripts.values())):
            for scenario_id, simulator in runs.items():
                lines = scripts[scenario_id]
                if number >= len(lines) or simulator.finished:
                    continue
                started = time.perf_counter()
                with self.model_slot(f"capacity-{scenario_id}"):
                    simulator.respond(lines[number])
                seconds.append(round(time.perf_counter() - started, 3))
        return seconds

    def warm_customer_prefixes(self, scenario_ids: Sequence[str] | None = None) -> int:
        """Read each scenario's (default: every one's) customer system prompt into the
        embedded model's prefix cache, so a session's first turn reads only its own part of the
        prompt (the app does this at start, after :meth:`warm_up`). Returns how many were read
        (0: no prefix cache)."""
        engine = self.local_engine
        if engine is None or engine.prefix_cache() is None:
            return 0
        ids = list(scenario_ids) if scenario_ids is not None else list(self.scenarios)
        for scenario_id in ids:
            simulator = self.customer(scenario_id)
            start = [SystemMessage(simulator.system_prompt), HumanMessage("")]
            with self.model_slot("warm-up"):  # waits behind trainees' turns like any turn
                self.customer_model.invoke(start, max_tokens=1)
        return len(ids)

    def warm_up(self) -> None:
        """Build everything now (the app calls this at start so the first reply is fast)."""
        _ = self.guidance, self.index, self.store, self.scenarios
        engine = getattr(self.model, "engine", None)  # loads the local model's weights
        del engine


class _Saver:
    """Hands writes to the durable writes (the journal keeps what the database refuses) and
    turns a write that was not saved now into a notice for the user."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.notices: list[str] = []

    def __call__(self, *writes: Write) -> bool:
        results = [self.services.writes.submit(w) for w in writes]
        if "refused" in results:
            self._notice(SAVE_REFUSED)
        elif "queued" in results:
            self._notice(SAVE_FAILED)
        return all(r == "saved" for r in results)

    def _notice(self, text: str) -> None:
        if text not in self.notices:
            self.notices.append(text)

    def take_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices


class PracticeRun:
    """One practice session: the simulated customer, the scorecard, and saving."""

    def __init__(
        self,
        services: Services,
        scenario_id: str,
        difficulty: str = "medium",
        seed: int = 0,
        *,
        user: str | None = None,
        role: str | None = None,
        thread_id: str | None = None,
        save: bool = True,
    ) -> None:
        self.services = services
        self.simulator = services.customer(scenario_id, difficulty, seed)
        self.scenario = self.simulator.scenario
        self.scorecard: Scorecard | None = None
        self.save = _Saver(services)
        self.saving = save  # False: nothing is written to the session store (coachbot --no-save)
        self._notices: list[str] = []
        self.session_id = uuid.uuid4().hex  # chosen now, so saves can queue behind the start
        self._start = start_write(  # saved with the first turn: an untouched session is not kept
            "practice",
            self.session_id,
            user=user,
            role=role,
            thread_id=thread_id,
            scenario_id=self.scenario.id,
            scenario_title=self.scenario.title,
            difficulty=difficulty,
            seed=seed,
        )
        self._started = False
        # One turn at a time: a reply, a hint and the debrief never overlap (the app runs
        # each in its own worker thread).
        self._turn = threading.Lock()
        self.final_transcript: Transcript | None = None  # what the scorecard was made from

    @property
    def opening_line(self) -> str:
        return self.scenario.opening_line

    @property
    def finished(self) -> bool:
        return self.simulator.finished or self.scorecard is not None

    @property
    def busy(self) -> bool:
        """A reply (or hint, or scoring) is being made right now."""
        return self._turn.locked()

    def _save_transcript(self) -> None:
        if not self.saving:
            return
        writes = [] if self._started else [self._start]
        self._started = True  # the journal keeps the start ahead of the turns
        # The write holds the transcript as JSON, as it is now.
        writes.append(practice_write(self.session_id, self.simulator.transcript, self.scorecard))
        self.save(*writes)

    def respond(self, text: str, on_token: Callable[[str], None] | None = None) -> Turn:
        """The customer's reply to the trainee's line (cleaned first; empty lines refused).

        Waits for a reply, hint or debrief in progress. A reply stopped by a cancelled scope
        (:mod:`bot.llm.cancel`) raises GenerationCancelled and leaves nothing behind.
        """
        with self._turn:
            if self.finished:
                raise CoachbotError(
                    "this practice session has ended", hint="start a new chat to practise again"
                )
            cleaned = clean_user_text(text, max_tokens=MAX_LINE_TOKENS, count_tokens=count_tokens)
            turn = self.simulator.respond(cleaned.text, on_token)
            self._notices += cleaned.notices
            if turn.model_notice:
                self._notices.append(turn.model_notice)
            if turn.model_error:
                self._notices.append(MODEL_FAILED.format(reason=turn.model_error))
            self._save_transcript()
            return turn

    def take_notices(self) -> list[str]:
        """Notices for the user since the last call (a cut message, a failed save...)."""
        notices, self._notices = self._notices + self.save.take_notices(), []
        return notices

    def hint(self) -> Hint:
        """What to try next (after the reply in progress, if any)."""
        with self._turn:
            hint = self.simulator.hint()
            self._save_transcript()
            return hint

    def end(self) -> Scorecard:
        """End the session (if the customer has not) and score it: after the reply in progress,
        from a snapshot of the finished transcript (:attr:`final_transcript`)."""
        with self._turn:
            if self.scorecard is None:
                self.final_transcript = self.simulator.end().model_copy(deep=True)
                self.scorecard = score_transcript(self.final_transcript, self.services.guidance)
                self._save_transcript()
            return self.scorecard


class CoachRun:
    """A coaching conversation: follow-ups use the history; every exchange is saved."""

    def __init__(
        self,
        services: Services,
        *,
        user: str | None = None,
        role: str | None = None,
        thread_id: str | None = None,
        save: bool = True,
    ) -> None:
        self.services = services
        self.coach = services.coach()
        self.history: list[dict[str, str]] = []
        self.save = _Saver(services)
        self.saving = save  # False: the history is kept, nothing is written to the store
        self.session_id = uuid.uuid4().hex
        self._started = False
        self._who = {"user": user, "role": role, "thread_id": thread_id}

    def stream(self, question: str) -> Iterator[CoachEvent]:
        """Coach events for ``question``; the exchange is saved when the answer is complete."""
        for event in self.coach.stream(question, self.history):
            if event.type == "answer" and event.answer is not None:
                self._record(event.answer)
            yield event

    def ask(self, question: str) -> CoachAnswer:
        final: CoachAnswer | None = None
        for event in self.stream(question):
            if event.type == "answer":
                final = event.answer
        assert final is not None
        return final

    def _record(self, answer: CoachAnswer) -> None:
        self.history += [
            {"role": "user", "content": answer.question},
            {"role": "assistant", "content": answer.answer},
        ]
        if not self.saving:
            return

        writes = [] if self._started else [start_write("coach", self.session_id, **self._who)]
        self._started = True
        self.save(*writes, coach_exchange_write(self.session_id, answer))
