"""The client side of the wire protocol (common/proto/protocol.md, "Client API"):
ClientMessage bytes to send, ServerMessage replies read and checked. No sockets here;
the sync and asyncio clients share it."""

from __future__ import annotations

from typing import Iterable, Optional, Union

from ._proto import pb
from ._version import PROTOCOL_VERSION  # kProtocolVersion of common/protocol.h: the coordinator refuses any other
from .errors import FloverError
from .request import Request

# The largest reply the client accepts (ZMQ_MAXMSGSIZE), as the C++ client (client.h).
MAX_SERVER_MESSAGE_BYTES = 64 << 20


def _utf8(value: Union[str, bytes], what: str) -> str:
    """`value` as text that is valid UTF-8 (proto3 strings must be); ValueError naming
    `what` otherwise."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"{what} is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{what} is not valid UTF-8 text ({error.reason} at index {error.start})") from None
    return value


def _stop_strings(stop: Union[None, str, Iterable[str]]) -> list:
    if stop is None:
        return []
    if isinstance(stop, (str, bytes)):
        stop = [stop]
    return [_utf8(s, f"stop[{i}]") for i, s in enumerate(stop)]


def submit_message(request: Request, request_id: str, stream: bool) -> bytes:
    """The submit of `request` under `request_id`; with `stream`, the coordinator sends
    a TokenEvent per step. Raises TypeError/ValueError for arguments that cannot be
    sent (the coordinator checks the values: FloverError InvalidArgument)."""
    q = request
    submit = pb.SubmitRequest(client_request_id=_utf8(request_id, "request_id"), stream=stream, priority=q.priority)
    if isinstance(q.prompt, (str, bytes)):
        submit.text = _utf8(q.prompt, "prompt")
    else:
        ids = list(q.prompt)
        if not ids or not all(isinstance(i, int) for i in ids):
            raise TypeError("prompt must be text or a non-empty sequence of token ids (ints)")
        submit.token_ids.ids.extend(ids)
    sampling = submit.sampling
    sampling.temperature, sampling.top_k, sampling.top_p = q.temperature, q.top_k, q.top_p
    sampling.repetition_penalty, sampling.seed = q.repetition_penalty, q.seed
    sampling.presence_penalty, sampling.frequency_penalty = q.presence_penalty, q.frequency_penalty
    sampling.logprobs, sampling.top_logprobs = q.logprobs, q.top_logprobs
    submit.stop.max_tokens = q.max_tokens
    submit.stop.stop_token_ids.extend(q.stop_token_ids)
    submit.stop.ignore_eos = q.ignore_eos
    submit.stop.stop_strings.extend(_stop_strings(q.stop))
    if q.timeout is not None:
        if not q.timeout > 0:
            raise ValueError(f"timeout must be positive seconds, got {q.timeout}")
        submit.timeout_ms = max(1, min(int(q.timeout * 1000), 2**32 - 1))
    return _envelope(submit=submit)


def cancel_message(request_id: str) -> bytes:
    return _envelope(cancel=pb.CancelRequest(client_request_id=request_id))


def status_message() -> bytes:
    return _envelope(status=pb.StatusRequest())


def _envelope(**body) -> bytes:
    return pb.ClientMessage(protocol_version=PROTOCOL_VERSION, **body).SerializeToString()


def parse_reply(data: bytes) -> "pb.ServerMessage":
    """A ServerMessage; FloverError for bytes that are not one of this version."""
    reply = pb.ServerMessage()
    try:
        reply.ParseFromString(data)
    except Exception as error:  # protobuf's DecodeError, or invalid UTF-8
        raise FloverError("Corruption", f"unreadable reply from the coordinator: {error}") from None
    if reply.protocol_version != PROTOCOL_VERSION:
        raise FloverError(
            "InvalidArgument",
            f"the coordinator speaks protocol version {reply.protocol_version}, this client {PROTOCOL_VERSION}: "
            "upgrade them together",
        )
    return reply


def reply_request_id(reply: "pb.ServerMessage") -> Optional[str]:
    """The client_request_id a reply is about; None for status and keepalive replies."""
    kind = reply.WhichOneof("body")
    if kind in ("accepted", "token", "done", "error"):
        return getattr(reply, kind).client_request_id
    return None


def error_of(reply: "pb.ServerMessage") -> FloverError:
    e = reply.error
    return FloverError(e.code or "Unknown", e.message, e.client_request_id or None)
