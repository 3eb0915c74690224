"""What Client and AsyncClient share: the arguments they take and the connection they
hold (a DEALER and its monitor, the connection state, the reply dispatcher)."""

from __future__ import annotations

import itertools
from typing import Optional

import zmq

from .connection import ConnectionState, open_socket
from .dispatch import Dispatcher
from .keys import load_client_keys
from .request import Request


class ClientBase:
    """A connection to a coordinator; subclasses make the context (blocking or asyncio)
    and decide when to wait for the connection (`_opened`).

    Args:
        endpoint: the coordinator's client endpoint, e.g. ``tcp://127.0.0.1:5555``.
        server_key: with ``security.mode: curve``, the coordinator's public key file
            (``NAME.pub`` of ``flover keygen``), which the client pins.
        client_key: and this client's key pair file (``NAME.key``, mode 0600).
        connect_timeout: seconds to wait for the coordinator to answer the connection;
            ConnectionError after it.
        reply_timeout: seconds a call waits without any reply from the coordinator
            before it gives up with ConnectionError (the request is cancelled).

    Raises:
        FloverError: bad key files (InvalidArgument, NotFound, PermissionDenied).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        server_key: Optional[str] = None,
        client_key: Optional[str] = None,
        connect_timeout: float = 5.0,
        reply_timeout: float = 60.0,
    ) -> None:
        keys = load_client_keys(client_key, server_key)
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.reply_timeout = reply_timeout
        self._context = self._new_context()
        try:
            self._socket, self._monitor = open_socket(self._context, endpoint, keys)
        except BaseException:
            self._context.term()
            raise
        self._state = ConnectionState(endpoint, keys is not None)
        self._dispatcher = Dispatcher()
        self._ids = itertools.count()
        self._opened()

    def _new_context(self) -> zmq.Context:
        raise NotImplementedError

    def _opened(self) -> None:
        """Called at the end of __init__."""

    def _request_id(self, request: Request) -> str:
        return request.request_id if request.request_id is not None else f"py-{next(self._ids)}"

    def _close_sockets(self) -> None:
        if not self._context.closed:
            self._monitor.close(linger=0)
            self._socket.close(linger=0)
            self._context.term()
