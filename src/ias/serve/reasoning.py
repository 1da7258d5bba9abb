"""`ias serve --strategy`: OpenAI requests answered by a test-time scaling method.

A request's question (a completion's `prompt`, a chat's last user message) is solved by
the server's method (any of `ias.methods`), whose compute adapts to the question; the
response's text is the chosen solution, `usage` counts every token of every sample, and an
`ias` block says how sure the answer is and what was spent. An optional `ias` object in the
request overrides the strategy and its main knobs within the operator's caps.

One scheduler thread owns an `Engine` over the policy and PRM: every concurrent request's
question joins it, so their waves go to the models together (one policy call and one PRM
call per wave of all questions), and a question that needs no more samples gets none.
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, field_validator

from ias.errors import UserError
from ias.methods import make_method, setting_names
from ias.methods.base import Question
from ias.methods.engine import Answer, Engine, Run
from ias.methods.sources import LiveSource
from ias.methods.tuning import base_method, tuned_for
from ias.serve.limits import ServeLimits
from ias.serve.requests import BadRequest, ChatRequest, CompletionRequest, _finite_number, _whole_number, parse
from ias.serve.scheduler import WorkerThread
from ias.types import Problem

#: The knobs a request may set, and the method setting each one is (first that the method has).
OVERRIDES = {
    "n_max": ("n_max", "n", "n_init", "particles"),
    "budget": ("n_max", "n", "n_init", "particles"),
    "coverage": ("coverage",),
    "min_confidence": ("target",),
}
#: Settings that bound a method's samples, capped by the server's --max-n.
SIZES = ("n_max", "n", "n_init", "particles")


class IasOptions(BaseModel):
    """The request's optional `ias` object."""

    model_config = ConfigDict(extra="forbid")

    strategy: str | None = None
    budget: Any = None
    n_max: Any = None
    coverage: Any = None
    min_confidence: Any = None

    @field_validator("budget", "n_max")
    @classmethod
    def _counts(cls, value: Any, info) -> Any:
        return _whole_number(value, f"ias.{info.field_name}", 1)

    @field_validator("coverage", "min_confidence")
    @classmethod
    def _shares(cls, value: Any, info) -> Any:
        value = _finite_number(value, f"ias.{info.field_name}")
        if value is not None and not 0 < value < 1:
            raise ValueError(f"ias.{info.field_name} must be in (0, 1), got {value}")
        return value


class ReasoningCompletion(CompletionRequest):
    ias: IasOptions | None = None


class ReasoningChat(ChatRequest):
    ias: IasOptions | None = None


@dataclass(frozen=True)
class ReasoningJob:
    """What a valid request asks: a question, the method for it, and how to answer."""

    question: Question
    method: Any
    stream: bool
    include_usage: bool
    strategy: str  # as asked (`ias-adaptive@8` runs method `ias-adaptive` with that budget's settings)


@dataclass
class Reasoner:
    """The server's method and what a request may change of it: `strategy` with `settings`
    (flags of `ias serve`), `tuned` (every setting a tuning file holds: `ias-adaptive`'s and
    `ias-adaptive@B`'s, with their confidence map; `ias.methods.tuning.tuned_variants`), the
    task that formats prompts and extracts answers."""

    task: Any
    strategy: str
    settings: dict = field(default_factory=dict)
    tuned: dict | None = None

    def __post_init__(self) -> None:
        self.default = self.method(IasOptions(), limit=None)  # a bad server setting fails at start

    def asked(self, options: IasOptions) -> str:
        """The strategy a request asks for: its `ias.strategy`, or the server's."""
        return options.strategy or self.strategy

    def method(self, options: IasOptions, limit: int | None) -> Any:
        """The method a request gets: the server's, or its `ias.strategy` at its defaults
        (tuned for ias-adaptive and ias-adaptive@B), with the request's overrides; sizes capped
        at `limit`."""
        strategy = self.asked(options)
        name = base_method(strategy)
        try:
            settings = {**tuned_for(strategy, self.tuned), **(self.settings if strategy == self.strategy else {})}
        except UserError as err:
            raise BadRequest(str(err), "ias.strategy") from None
        if options.budget is not None and options.n_max is not None:
            raise BadRequest("give ias.budget or ias.n_max, not both", "ias.budget")
        try:
            known = setting_names(name)
        except UserError as err:
            raise BadRequest(str(err), "ias.strategy") from None
        for key, targets in OVERRIDES.items():
            value = getattr(options, key)
            if value is None:
                continue
            target = next((t for t in targets if t in known), None)
            if target is None:
                raise BadRequest(f"strategy '{name}' has no setting for ias.{key}", f"ias.{key}")
            settings[target] = value
        try:
            method = make_method(name, **settings)
        except (UserError, ValueError, TypeError) as err:
            raise BadRequest(str(err), "ias") from None
        if limit is not None:
            for size in SIZES:
                if size in known and getattr(method, size) > limit:
                    raise BadRequest(
                        f"{size} {getattr(method, size)} is past this server's --max-n {limit}", "ias.n_max"
                    )
        return method

    def job(self, body: Any, chat: bool, model_name: str, limits: ServeLimits) -> ReasoningJob:
        """A request as the question it asks and the method that answers it."""
        request = parse(ReasoningChat if chat else ReasoningCompletion, body)
        if request.model is not None and request.model != model_name:
            raise BadRequest(
                f"The model `{request.model}` does not exist; this server serves `{model_name}`", "model", 404
            )
        for key in ("temperature", "top_p", "max_tokens", "logprobs") + (("max_completion_tokens",) if chat else ()):
            if getattr(request, key) is not None:
                raise BadRequest(
                    f"{key} is the server's with a strategy (its calibration holds for its own "
                    "sampling settings); leave it out",
                    key,
                )
        if (request.n or 1) != 1 or request.stop:
            raise BadRequest("a strategy answers with one choice (n = 1) and its own stop rules", "n")
        if chat:
            users = [m.content for m in request.messages if m.role == "user"]
            if not users:
                raise BadRequest("messages hold no user message (the question)", "messages")
            text = users[-1]
        else:
            if len(request.prompt) != 1:
                raise BadRequest("a strategy answers one question per request: give one prompt", "prompt")
            text = request.prompt[0]
        if not text.strip():
            raise BadRequest("the question is empty", "messages" if chat else "prompt")
        if len(text) > limits.max_prompt_chars:
            raise BadRequest(
                f"the question has {len(text)} characters; this server takes at most {limits.max_prompt_chars}",
                "messages" if chat else "prompt",
            )
        options = request.ias or IasOptions()
        method = self.method(options, limits.max_n)
        problem = Problem(id=f"seed-{request.seed}", question=text, answer="")
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        if request.stream_options and not request.stream:
            raise BadRequest("stream_options needs stream: true", "stream_options")
        return ReasoningJob(
            Question(problem, self.task.extract), method, request.stream, include_usage, self.asked(options)
        )


@dataclass(eq=False)
class Ticket:
    """One request's question in the engine; `future` gets its `Answer`."""

    job: ReasoningJob
    on_wave: Callable[[dict], None] | None = None
    future: Future = field(default_factory=Future)
    run: Run | None = None
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True
        self.future.cancel()


class ReasoningScheduler(WorkerThread):
    """The policy's and PRM's only caller: a thread stepping one engine of every request's
    question. New requests join before each step; finished ones are answered at once."""

    def __init__(self, source: LiveSource, max_pending: int = 256):
        super().__init__("ias-serve-reasoning", max_pending)
        self.engine = Engine(source, isolate=True)
        self._new: deque[Ticket] = deque()
        self._live: dict[int, Ticket] = {}  # id(run) -> its ticket
        self._thread.start()

    def submit(self, job: ReasoningJob, on_wave: Callable[[dict], None] | None = None) -> Ticket:
        ticket = Ticket(job, on_wave)
        self._admit(self._new, ticket)
        return ticket

    def close(self, timeout: float = 300.0) -> None:
        with self._cond:
            self._closed = True
            for ticket in [*self._new, *self._live.values()]:
                ticket.cancel()
            self._cond.notify()
        self._join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._new and not self.engine.busy and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                joining = list(self._new)
                self._new.clear()
            for ticket in joining:
                if ticket.cancelled:
                    self._end(ticket)
                    continue
                run = ticket.run = self.engine.start(ticket.job.method, ticket.job.question)
                self._after(ticket, run)
            for ticket in list(self._live.values()):
                if ticket.cancelled:  # its client left or its time ran out: no more work for it
                    if ticket.run is not None:  # always set once live
                        self.engine.drop(ticket.run)
                    self._end(ticket)
            if self.engine.busy:
                for run in self.engine.step():
                    if id(run) in self._live:
                        self._after(self._live[id(run)], run)

    def _after(self, ticket: Ticket, run: Run) -> None:
        """Tell the ticket's waiter of new waves, and answer it once its question (`run`) is done."""
        self._live[id(run)] = ticket
        if ticket.on_wave is not None and not ticket.cancelled:
            ticket.on_wave({})
        if run.done:
            try:
                if run.error is not None:
                    ticket.future.set_exception(run.error)
                else:
                    ticket.future.set_result(run.answer)
            except InvalidStateError:  # cancelled meanwhile
                pass
            self._end(ticket)

    def _end(self, ticket: Ticket) -> None:
        with self._cond:
            if ticket.run is not None:
                self._live.pop(id(ticket.run), None)
            self._pending -= 1


def response(chat: bool, model_name: str, ident: str, created: int, answer: Answer, strategy: str) -> dict:
    """The whole answer: one choice holding the chosen solution, usage of every sample, and
    the `ias` block."""
    text = answer.text or ""
    choice = (
        {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop", "stop_reason": None}
    )
    return {
        "id": ident,
        "object": "chat.completion" if chat else "text_completion",
        "created": created,
        "model": model_name,
        "choices": [choice],
        "usage": usage(answer),
        "ias": ias_block(answer, strategy),
    }


def usage(answer: Answer) -> dict:
    """OpenAI usage over every sample the method drew, PRM tokens in `ias`."""
    return {
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.generated_tokens,
        "total_tokens": answer.prompt_tokens + answer.generated_tokens,
        "ias": {"prm_tokens": answer.prm_tokens, "samples": answer.n_samples},
    }


def ias_block(answer: Answer, strategy: str) -> dict:
    """What the answer is worth: its extracted answer, the calibrated confidence that it is
    right with its interval, the samples spent and each wave's decision."""
    interval = answer.choice.interval
    return {
        "strategy": strategy,
        "answer": answer.answer,
        "confidence": round(answer.confidence, 6),
        "confidence_interval": [round(x, 6) for x in interval] if interval else None,
        "samples": answer.n_samples,
        "generated_tokens": answer.generated_tokens,
        "prm_tokens": answer.prm_tokens,
        "waves": answer.waves,
        "wall_s": round(answer.wall_s, 4),
    }


def wave_event(chat: bool, model_name: str, ident: str, created: int, answer: Answer, strategy: str) -> dict:
    """A stream event after a wave: no text yet, the waves so far and what they cost."""
    kind = "chat.completion.chunk" if chat else "text_completion"
    return {
        "id": ident,
        "object": kind,
        "created": created,
        "model": model_name,
        "choices": [],
        "ias": {
            "strategy": strategy,
            "waves": answer.waves,
            "samples": answer.n_samples,
            "generated_tokens": answer.generated_tokens,
        },
    }


def final_event(chat: bool, model_name: str, ident: str, created: int, answer: Answer, strategy: str) -> dict:
    """The stream's answer: the chosen solution as one chunk, with the `ias` block."""
    text = answer.text or ""
    choice = (
        {"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        if chat
        else {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
    )
    return {
        "id": ident,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model_name,
        "choices": [choice],
        "ias": ias_block(answer, strategy),
    }
