"""AsyncClient: the asyncio twin of Client (same methods, awaited), for many requests at
once over one connection: a reader task routes every reply to the request waiting for
it, so any number of generate() and stream() calls may run concurrently.

    import asyncio
    from flover_client import AsyncClient

    async def main():
        async with AsyncClient("tcp://127.0.0.1:5555") as client:
            prompts = ["Sara", "Ben", "Lily"]
            results = await asyncio.gather(*(client.generate(p, max_tokens=32) for p in prompts))
            async with client.stream("Once upon a time") as stream:
                async for event in stream:
                    print(event.text, end="")

Cancelling the asyncio task of a generate() (or leaving a stream early) cancels the
request at the coordinator. Thread-safety: one event loop; create the client in it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, Optional, Union

import zmq
import zmq.asyncio

from .base import ClientBase
from .connection import closed_error, connect_timeout_error, silence_error
from .dispatch import STATUS_RETRY_AFTER_S, Item, Progress, status_answer
from .errors import ConnectionError, FloverError
from .request import Prompt, Request
from .results import Completion, TokenEvent
from .wire import cancel_message, status_message, submit_message


class AsyncClient(ClientBase):
    """A connection to a coordinator for asyncio. Arguments as :class:`Client`'s; the
    connection is made by ``connect()`` (or ``async with``, or the first call), which
    raises ConnectionError when nothing answers within `connect_timeout` seconds."""

    def _new_context(self) -> zmq.Context:
        return zmq.asyncio.Context()

    def _opened(self) -> None:
        self._reader: Optional[asyncio.Task] = None
        self._established: Optional[asyncio.Future] = None

    # ------------------------------------------------------------------ public API

    async def connect(self) -> None:
        """Waits until the coordinator answers the connection (at once when it has).

        Raises ConnectionError after connect_timeout, FloverError for a refusal."""
        self._state.check()
        if self._reader is None:
            self._established = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(), name=f"flover_client reader {self.endpoint}")
        assert self._established is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._established), self.connect_timeout)
        except asyncio.TimeoutError:
            raise connect_timeout_error(self.endpoint, self.connect_timeout) from None

    async def generate(self, prompt: Prompt, **params: Any) -> Completion:
        """Runs one request to its end; as Client.generate."""
        async with self._open(Request(prompt, **params)) as stream:
            async for _ in stream:
                pass
        assert stream.completion is not None
        return stream.completion

    def stream(self, prompt: Prompt, **params: Any) -> "AsyncStream":
        """One request with streaming: ``async with client.stream(...) as s`` submits it,
        ``async for event in s`` yields TokenEvents then the Completion (iterating
        without ``async with`` submits at the first step). `params` as for generate()."""
        return self._open(Request(prompt, **params))

    async def cancel(self, request_id: str) -> bool:
        """As Client.cancel: False when no such request is in flight here."""
        if not self._dispatcher.following(request_id):
            return False
        await self._send(cancel_message(request_id))
        return True

    async def status(self, timeout: float = 30.0) -> Dict[str, Any]:
        """As Client.status."""
        await self.connect()
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            answer: asyncio.Future = loop.create_future()
            self._dispatcher.expect_status(lambda item: answer.done() or answer.set_result(item))
            await self._send(status_message())
            try:
                item = await asyncio.wait_for(answer, max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise ConnectionError(
                    f"no status from the coordinator at {self.endpoint} within {timeout:g} s"
                ) from None
            result = status_answer(item, time.monotonic() + STATUS_RETRY_AFTER_S < deadline)
            if result is not None:
                return result
            await asyncio.sleep(STATUS_RETRY_AFTER_S)  # asked too often: ask again

    async def close(self) -> None:
        """Stops the reader and closes the connection; the coordinator cancels what is
        in flight."""
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except BaseException:
                pass
            self._reader = None
        self._close_sockets()

    async def __aenter__(self) -> "AsyncClient":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ internals

    def _open(self, request: Request) -> "AsyncStream":
        request_id = self._request_id(request)
        return AsyncStream(self, request_id, submit_message(request, request_id, stream=True))

    async def _submit(self, request_id: str, message: bytes, queue: "asyncio.Queue[Item]") -> None:
        await self.connect()
        self._dispatcher.follow(request_id, queue.put_nowait)
        try:
            await self._send(message)
        except BaseException:
            self._dispatcher.forget(request_id)
            raise

    async def _next(self, progress: Progress, queue: "asyncio.Queue[Item]") -> Union[TokenEvent, Completion]:
        started = time.monotonic()
        while True:
            left = max(self._dispatcher.last_reply, started) + self.reply_timeout - time.monotonic()
            if left <= 0:
                raise silence_error(self.endpoint, self.reply_timeout, progress.request_id)
            try:
                item = await asyncio.wait_for(queue.get(), left)
            except asyncio.TimeoutError:
                continue
            result = progress.apply(item)
            if result is not None:
                return result

    async def _end(self, progress: Progress) -> None:
        if self._dispatcher.following(progress.request_id):
            self._dispatcher.forget(progress.request_id)
            if not progress.ended and not self._context.closed:
                try:
                    await self._send(cancel_message(progress.request_id))
                except FloverError:
                    pass  # the connection is gone: the coordinator cancels it itself

    async def _send(self, message: bytes) -> None:
        self._state.check()
        await self._socket.send(message)

    async def _read(self) -> None:
        """The reader task: routes replies and monitor events until cancelled."""
        poller = zmq.asyncio.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        try:
            while True:
                ready = dict(await poller.poll())
                if self._socket in ready:
                    await self._read_replies()
                if self._monitor in ready:
                    await self._read_monitor()
        except FloverError as error:  # a refused connection: every call fails with it
            self._dispatcher.fail_all(error)
            if self._established is not None and not self._established.done():
                self._established.set_exception(error)

    async def _read_replies(self) -> None:
        while True:  # replies that arrived before a close come first
            try:
                data = await self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._dispatcher.route_bytes(data)

    async def _read_monitor(self) -> None:
        while True:
            try:
                frames = await self._monitor.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            closed = self._state.feed(frames)
            if self._state.established and self._established is not None and not self._established.done():
                self._established.set_result(None)
            if closed:
                self._dispatcher.fail_all(closed_error(self.endpoint))


class AsyncStream:
    """A request with streaming, for asyncio: as Stream (TokenEvents, then the
    Completion, also in ``completion``); leaving it early cancels the request."""

    def __init__(self, client: AsyncClient, request_id: str, message: bytes) -> None:
        self.request_id = request_id
        self.completion: Optional[Completion] = None
        self._client = client
        self._message: Optional[bytes] = message  # None once submitted
        self._queue: "asyncio.Queue[Item]" = asyncio.Queue()
        self._progress = Progress(request_id)

    async def start(self) -> None:
        """Submits the request (once)."""
        if self._message is not None:
            message, self._message = self._message, None
            await self._client._submit(self.request_id, message, self._queue)

    def __aiter__(self) -> "AsyncStream":
        return self

    async def __anext__(self) -> Union[TokenEvent, Completion]:
        if self._progress.ended:
            raise StopAsyncIteration
        try:
            await self.start()
            result = await self._client._next(self._progress, self._queue)
        except BaseException:
            await self.aclose()  # cancels the request unless it ended
            self._progress.ended = True
            raise
        if isinstance(result, Completion):
            self.completion = result
            await self.aclose()
        return result

    async def cancel(self) -> bool:
        """Asks the coordinator to cancel the request (see AsyncClient.cancel)."""
        return await self._client.cancel(self.request_id)

    async def aclose(self) -> None:
        await self._client._end(self._progress)

    async def __aenter__(self) -> "AsyncStream":
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
