"""Replies routed to whoever waits for them, the logic both clients share.

One connection carries many requests: every reply about a request (Accepted,
TokenEvent, Done, Error) goes to that request's sink; status replies, and Errors that
name no request (the coordinator refusing a status request for coming too often), go to
the oldest status request still unanswered (the coordinator answers a connection in
order). Replies for requests no longer followed are dropped; Keepalives are ignored.
A sink is a callable taking a ServerMessage or a FloverError (the connection failed).

Thread-safety: none; the owner of the socket calls it.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Union

from google.protobuf.json_format import MessageToDict

from ._proto import pb
from .errors import FloverError
from .results import Completion, TokenEvent, completion, token_event
from .wire import error_of, parse_reply, reply_request_id

# How long status() waits before asking again when the coordinator refused a status
# request for coming too often (limits.status_per_client_per_second).
STATUS_RETRY_AFTER_S = 0.2

Item = Union["pb.ServerMessage", FloverError]
Sink = Callable[[Item], None]


class Dispatcher:
    def __init__(self) -> None:
        self._requests: Dict[str, Sink] = {}
        self._status: Deque[Sink] = deque()
        self.last_reply = time.monotonic()  # when the last reply (not a keepalive) arrived

    def follow(self, request_id: str, sink: Sink) -> None:
        """Routes the replies about `request_id` to `sink` until forget()."""
        if request_id in self._requests:
            raise ValueError(f"request id '{request_id}' is already in flight on this connection")
        self._requests[request_id] = sink

    def forget(self, request_id: str) -> None:
        self._requests.pop(request_id, None)

    def following(self, request_id: str) -> bool:
        return request_id in self._requests

    def expect_status(self, sink: Sink) -> None:
        """`sink` gets the answer to the status request about to be sent."""
        self._status.append(sink)

    def route_bytes(self, data: bytes) -> None:
        """Routes a reply as received. One that cannot be read (another protocol version,
        or broken bytes) could be about any request: every one in flight ends with its
        error."""
        try:
            reply = parse_reply(data)
        except FloverError as error:
            self.fail_all(error)
            return
        self.route(reply)

    def route(self, reply: "pb.ServerMessage") -> None:
        kind = reply.WhichOneof("body")
        if kind == "keepalive":
            return
        self.last_reply = time.monotonic()
        request_id = reply_request_id(reply)
        if request_id and request_id in self._requests:
            self._requests[request_id](reply)
        elif kind == "status" or (kind == "error" and not request_id):
            if self._status:
                self._status.popleft()(reply)

    def fail_all(self, error: FloverError) -> None:
        """Every request followed, and every status request unanswered, ends with `error`."""
        for sink in list(self._requests.values()):
            sink(error)
        while self._status:
            self._status.popleft()(error)


class Progress:
    """One request's replies, in order, turned into what its caller sees."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.ended = False
        self._accepted: Optional["pb.Accepted"] = None

    def apply(self, item: Item) -> Union[None, TokenEvent, Completion]:
        """None for an Accepted, a TokenEvent, or the Completion (the request ended);
        raises FloverError for an Error (the request ended too)."""
        if isinstance(item, FloverError):
            self.ended = True
            raise item
        kind = item.WhichOneof("body")
        if kind == "accepted":
            self._accepted = item.accepted
            return None
        if kind == "token":
            return token_event(item.token)
        self.ended = True
        if kind == "done":
            return completion(item.done, self._accepted)
        raise error_of(item)


def _as_dict(message: Any) -> Dict[str, Any]:
    """Every field present, names as in the .proto (protobuf 26 renamed the option)."""
    try:
        return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    except TypeError:
        return MessageToDict(message, preserving_proto_field_name=True, including_default_value_fields=True)


def status_answer(item: Item, may_retry: bool) -> Optional[Dict[str, Any]]:
    """The answer to a status request: the ClusterStatus as a dict (every field present,
    names as in flover.proto), or None when the coordinator refused it for coming too
    often (limits.status_per_client_per_second) and `may_retry`: ask again a little
    later. Raises FloverError otherwise."""
    if isinstance(item, FloverError):
        raise item
    if item.WhichOneof("body") == "status":
        return _as_dict(item.status)
    error = item.error
    if error.code == "ResourceExhausted" and may_retry:
        return None
    raise FloverError(error.code, f"status: {error.message}")
