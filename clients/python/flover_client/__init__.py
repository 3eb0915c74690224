"""flover_client: a Python client of Flover's native ZeroMQ API (common/proto/flover.proto).

    from flover_client import Client
    client = Client("tcp://127.0.0.1:5555")
    completion = client.generate("Once upon a time", max_tokens=64)
    print(completion.text, completion.finish_reason, completion.usage.completion_tokens)

Client is blocking; AsyncClient is its asyncio twin for many concurrent requests on one
connection. Errors are FloverError (the coordinator's code and message) and
ConnectionError (nothing answers, the connection closed, the coordinator went silent).
Needs pyzmq and protobuf (Debian: python3-zmq python3-protobuf).
"""

from __future__ import annotations

try:
    import google.protobuf  # noqa: F401
    import zmq  # noqa: F401
except ImportError as _error:  # pragma: no cover - a setup error, reported clearly
    raise ImportError(
        f"flover_client needs pyzmq and protobuf (Debian: apt-get install python3-zmq python3-protobuf): {_error}"
    ) from _error

from .aio import AsyncClient, AsyncStream
from .client import Client, Stream
from .errors import ConnectionError, FloverError
from .keys import CurveKeys, load_client_keys
from .request import Request
from .results import Completion, Timings, TokenEvent, TokenLogprobs, Usage
from ._version import PROTOCOL_VERSION, __version__

__all__ = [
    "AsyncClient",
    "AsyncStream",
    "Client",
    "Completion",
    "ConnectionError",
    "CurveKeys",
    "FloverError",
    "PROTOCOL_VERSION",
    "Request",
    "Stream",
    "Timings",
    "TokenEvent",
    "TokenLogprobs",
    "Usage",
    "__version__",
    "load_client_keys",
]
