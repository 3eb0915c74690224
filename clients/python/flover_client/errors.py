"""The exceptions of flover_client.

Every error the coordinator reports, and every failure of the connection, is a
:class:`FloverError` carrying a status code (the names of Flover's ``StatusCode``:
``InvalidArgument``, ``ResourceExhausted``, ``Unavailable``, ``DeadlineExceeded``,
``PermissionDenied``, ...) and a message a user can act on.
"""

from __future__ import annotations

import builtins
from typing import Optional


class FloverError(Exception):
    """An error from the coordinator, or one the client found itself.

    Attributes:
        code: the StatusCode name (``"InvalidArgument"``, ``"Unavailable"``, ...).
        message: what went wrong, as the coordinator (or the client) said it.
        request_id: the client_request_id of the request it ended, if any.
    """

    def __init__(self, code: str, message: str, request_id: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.request_id = request_id


class ConnectionError(FloverError, builtins.ConnectionError):  # noqa: A001 (the name users expect)
    """Nothing answered at the endpoint within the connect timeout, the connection to
    the coordinator closed while requests were in flight, or the coordinator said
    nothing for the reply timeout. Its code is ``Unavailable``. It is also a builtin
    ``ConnectionError``, so ``except ConnectionError`` catches it either way."""

    def __init__(self, message: str, request_id: Optional[str] = None) -> None:
        super().__init__("Unavailable", message, request_id)
