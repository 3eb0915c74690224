"""What a request gives back: streamed :class:`TokenEvent` objects and the final
:class:`Completion` (the coordinator's ``Done``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

from ._proto import pb

# FinishReason values as the rest of Flover names them (common/request_params.h).
_FINISH_NAMES = {
    pb.FINISH_NONE: "none",
    pb.FINISH_STOP: "stop",
    pb.FINISH_LENGTH: "length",
    pb.FINISH_CANCELLED: "cancelled",
    pb.FINISH_ERROR: "error",
}


@dataclass(frozen=True)
class Usage:
    """Token counts of a completion."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Timings:
    """Seconds, as the coordinator measured them from when it received the request."""

    queue_seconds: float        # until its first step
    first_token_seconds: float  # until its first token
    total_seconds: float        # until it ended


@dataclass(frozen=True)
class TokenLogprobs:
    """One generated token's log-probability under the model's own distribution
    (log_softmax of the raw logits, before temperature and penalties), and the
    request's top_logprobs most likely tokens of that step as (token, logprob) pairs,
    most likely first (ties: lower token id first)."""

    logprob: float
    top: List[Tuple[int, float]]


@dataclass(frozen=True)
class TokenEvent:
    """Tokens generated since the previous event, and their text: whole UTF-8
    characters only (a character split over byte tokens comes with its last byte, so an
    event may have tokens and no text, and a last one text and no tokens). Joined, the
    events' texts are the completion's text."""

    request_id: str
    tokens: List[int]
    text: str
    logprobs: List[TokenLogprobs] = field(default_factory=list)  # one per token, when the request asked


@dataclass(frozen=True)
class Completion:
    """A finished request.

    ``finish_reason`` is ``"stop"`` (EOS, a stop token or a stop string, which is not in
    ``text``), ``"length"`` (max_tokens or the context), ``"cancelled"``, or ``"error"``.
    ``replica`` is the replica that accepted it (-1 if no Accepted arrived).
    """

    request_id: str
    text: str
    tokens: List[int]
    finish_reason: str
    usage: Usage
    timings: Timings
    replica: int = -1
    cluster_request_id: int = 0  # the coordinator's own id (Accepted.request_id)
    logprobs: List[TokenLogprobs] = field(default_factory=list)  # one per token, when the request asked


def finish_reason_name(value: int) -> str:
    return _FINISH_NAMES.get(value, "unknown")


def _logprobs(messages) -> List[TokenLogprobs]:
    return [TokenLogprobs(logprob=m.logprob, top=[(t.token, t.logprob) for t in m.top]) for m in messages]


def token_event(message: "pb.TokenEvent") -> TokenEvent:
    return TokenEvent(
        request_id=message.client_request_id,
        tokens=list(message.tokens),
        text=message.text,
        logprobs=_logprobs(message.logprobs),
    )


def completion(done: "pb.Done", accepted: "pb.Accepted | None") -> Completion:
    return Completion(
        request_id=done.client_request_id,
        text=done.text,
        tokens=list(done.tokens),
        finish_reason=finish_reason_name(done.finish_reason),
        usage=Usage(prompt_tokens=done.prompt_tokens, completion_tokens=done.completion_tokens),
        timings=Timings(
            queue_seconds=done.queue_seconds,
            first_token_seconds=done.first_token_seconds,
            total_seconds=done.total_seconds,
        ),
        replica=accepted.replica if accepted is not None else -1,
        cluster_request_id=accepted.request_id if accepted is not None else 0,
        logprobs=_logprobs(done.logprobs),
    )
