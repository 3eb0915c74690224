"""Client: a blocking connection to a Flover coordinator's client endpoint
(``endpoints.client``), speaking the native protocol (common/proto/protocol.md).

    from flover_client import Client
    with Client("tcp://127.0.0.1:5555") as client:
        print(client.generate("Once upon a time", max_tokens=64).text)
        for event in client.stream("Sara", max_tokens=32):
            print(event.text, end="", flush=True)

Thread-safety: none; a Client belongs to one thread (its ZeroMQ socket does). Use
AsyncClient for many requests at once.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Dict, Iterator, Optional, Union

import zmq

from .base import ClientBase
from .connection import closed_error, connect_timeout_error, silence_error
from .dispatch import STATUS_RETRY_AFTER_S, Item, Progress, status_answer
from .errors import ConnectionError, FloverError
from .request import Prompt, Request
from .results import Completion, TokenEvent
from .wire import cancel_message, status_message, submit_message

class Client(ClientBase):
    """A blocking connection to a coordinator. Arguments: see :class:`ClientBase`
    (endpoint, server_key, client_key, connect_timeout, reply_timeout); the constructor
    waits for the connection.

    Raises:
        ConnectionError: nothing answered within connect_timeout.
        FloverError: bad key files (InvalidArgument, NotFound, PermissionDenied), or the
            coordinator refused the connection (PermissionDenied, ResourceExhausted,
            FailedPrecondition).
    """

    def _new_context(self) -> zmq.Context:
        return zmq.Context()

    def _opened(self) -> None:
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        try:
            self._wait_connected(self.connect_timeout)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ public API

    def generate(self, prompt: Prompt, **params: Any) -> Completion:
        """Runs one request to its end. `params`: the fields of :class:`Request`
        (max_tokens, temperature, top_k, top_p, repetition_penalty, presence_penalty,
        frequency_penalty, logprobs, top_logprobs, seed, stop, stop_token_ids,
        ignore_eos, priority, timeout, request_id).

        Raises FloverError with the coordinator's code and message (InvalidArgument,
        ResourceExhausted, DeadlineExceeded, Unavailable, ...), ConnectionError when the
        connection closed or the coordinator went silent. Interrupted (Ctrl-C), the
        request is cancelled at the coordinator. The request streams (its token events
        are dropped here), so that a long generation is not silence to reply_timeout."""
        with self._open(Request(prompt, **params)) as stream:
            for _ in stream:
                pass
            assert stream.completion is not None
            return stream.completion

    def stream(self, prompt: Prompt, **params: Any) -> "Stream":
        """Submits one request with streaming and returns its :class:`Stream`: iterate it
        for TokenEvents, then the final Completion. `params` as for generate()."""
        return self._open(Request(prompt, **params))

    def cancel(self, request_id: str) -> bool:
        """Asks the coordinator to cancel a request in flight; its stream then ends with
        finish_reason ``cancelled``. False (nothing sent) when no such request is in
        flight on this connection."""
        if not self._dispatcher.following(request_id):
            return False
        self._send(cancel_message(request_id))
        return True

    def status(self, timeout: float = 30.0) -> Dict[str, Any]:
        """The cluster's status (ClusterStatus of flover.proto as a dict: ``name``,
        ``model``, ``replicas`` with their ``state`` and ``workers``, ``queued``,
        ``latency``, ...; every field present, names as in the .proto).

        Raises ConnectionError when no status arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            answer: Deque[Item] = deque()
            self._dispatcher.expect_status(answer.append)
            self._send(status_message())
            while not answer:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ConnectionError(f"no status from the coordinator at {self.endpoint} within {timeout:g} s")
                self._pump(left)
            may_retry = time.monotonic() + STATUS_RETRY_AFTER_S < deadline
            result = status_answer(answer.popleft(), may_retry)
            if result is not None:
                return result
            time.sleep(STATUS_RETRY_AFTER_S)  # asked too often: ask again

    def close(self) -> None:
        """Closes the connection; requests in flight are cancelled by the coordinator."""
        self._close_sockets()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _open(self, request: Request) -> "Stream":
        request_id = self._request_id(request)
        message = submit_message(request, request_id, stream=True)
        inbox: Deque[Item] = deque()
        self._dispatcher.follow(request_id, inbox.append)
        try:
            self._send(message)
        except BaseException:
            self._dispatcher.forget(request_id)
            raise
        return Stream(self, request_id, inbox)

    def _next(self, progress: Progress, inbox: Deque[Item]) -> Union[TokenEvent, Completion]:
        """The next TokenEvent or the Completion of a request (raising its error)."""
        started = time.monotonic()
        while True:
            while inbox:
                result = progress.apply(inbox.popleft())
                if result is not None:
                    return result
            silent_until = max(self._dispatcher.last_reply, started) + self.reply_timeout
            left = silent_until - time.monotonic()
            if left <= 0:
                raise silence_error(self.endpoint, self.reply_timeout, progress.request_id)
            self._pump(left)

    def _end(self, progress: Progress) -> None:
        """Stops following a request; cancels it at the coordinator if it is in flight."""
        if self._dispatcher.following(progress.request_id):
            self._dispatcher.forget(progress.request_id)
            if not progress.ended and not self._context.closed:
                try:
                    self._send(cancel_message(progress.request_id))
                except FloverError:
                    pass  # the connection is gone: the coordinator cancels it itself

    def _wait_connected(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._state.established:
            left = deadline - time.monotonic()
            if left <= 0:
                raise connect_timeout_error(self.endpoint, timeout)
            if self._monitor.poll(left * 1000):
                self._read_monitor()

    def _pump(self, max_wait: float) -> None:
        """Waits up to `max_wait` seconds for replies and monitor events, and routes them."""
        ready = dict(self._poller.poll(int(min(max(max_wait, 0.0), 3600.0) * 1000) + 1))
        if self._socket in ready:
            while True:  # replies that arrived before a close come first
                try:
                    data = self._socket.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self._dispatcher.route_bytes(data)
        if self._monitor in ready:
            self._read_monitor()

    def _read_monitor(self) -> None:
        while True:
            try:
                frames = self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                closed = self._state.feed(frames)
            except FloverError as refusal:
                self._dispatcher.fail_all(refusal)
                raise
            if closed:
                self._dispatcher.fail_all(closed_error(self.endpoint))

    def _send(self, message: bytes) -> None:
        """Sends, waiting while the connection's queue is full, but not past a refusal."""
        while True:
            self._state.check()
            try:
                self._socket.send(message, zmq.NOBLOCK)
                return
            except zmq.Again:
                if self._monitor.poll(100):
                    self._read_monitor()


class Stream:
    """A request submitted with streaming. Iterating yields TokenEvents as the
    coordinator sends them, then the final Completion (also in ``completion``), and
    raises FloverError if the request ends with an error. Closing it (or leaving its
    ``with`` block, or a generate() that is interrupted) before the end cancels the
    request at the coordinator."""

    def __init__(self, client: Client, request_id: str, inbox: Deque[Item]) -> None:
        self.request_id = request_id
        self.completion: Optional[Completion] = None
        self._client = client
        self._inbox = inbox
        self._progress = Progress(request_id)

    def __iter__(self) -> Iterator[Union[TokenEvent, Completion]]:
        return self

    def __next__(self) -> Union[TokenEvent, Completion]:
        if self._progress.ended:
            raise StopIteration
        try:
            result = self._client._next(self._progress, self._inbox)
        except BaseException:
            self.close()  # cancels the request unless it ended
            self._progress.ended = True
            raise
        if isinstance(result, Completion):
            self.completion = result
            self.close()
        return result

    def cancel(self) -> bool:
        """Asks the coordinator to cancel the request (see Client.cancel)."""
        return self._client.cancel(self.request_id)

    def close(self) -> None:
        self._client._end(self._progress)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
