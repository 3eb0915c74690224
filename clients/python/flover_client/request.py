"""The parameters of one request, shared by every method that submits one
(``generate`` and ``stream`` of both clients take them as keyword arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Union

Prompt = Union[str, bytes, Sequence[int]]


@dataclass(frozen=True)
class Request:
    """One completion request.

    Attributes:
        prompt: text (tokenized by the coordinator, BOS added; bytes must be UTF-8) or a
            sequence of token ids, used as given.
        max_tokens: tokens to generate at most (>= 1).
        temperature: 0 is greedy.
        top_k: 0 is off.
        top_p: 1 is off.
        repetition_penalty: 1 is off (divides the logits of tokens in the prompt and
            the output so far).
        presence_penalty, frequency_penalty: OpenAI's, -2..2, 0 is off: each token's
            logit is lowered by frequency_penalty x its count in the output so far, plus
            presence_penalty if that count is not 0.
        seed: the sampling seed (the same seed, prompt and parameters give the same
            tokens, alone or batched).
        stop: text that ends the completion where it first appears (finish reason
            ``stop``; the string and what follows are not in the text): one string or
            several.
        logprobs: return each generated token's log-probability (log_softmax of the
            model's raw logits, before temperature and penalties): TokenEvent.logprobs,
            Completion.logprobs.
        top_logprobs: and this many most likely tokens of each step (0..20; needs
            logprobs).
        stop_token_ids: token ids that end the completion (not output).
        ignore_eos: keep generating past EOS (exact lengths, for benchmarks).
        priority: lower runs first, when the cluster's scheduler honours priorities.
        timeout: seconds the request may take at the coordinator (queued or running);
            past it the request ends with FloverError ``DeadlineExceeded``. None: none.
        request_id: the client_request_id (unique among this connection's requests in
            flight); None picks one. ``cancel`` takes it.
    """

    prompt: Prompt
    max_tokens: int = 256
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int = 0
    stop: Union[None, str, Iterable[str]] = None
    stop_token_ids: Sequence[int] = ()
    ignore_eos: bool = False
    priority: int = 0
    timeout: Optional[float] = None
    request_id: Optional[str] = None
