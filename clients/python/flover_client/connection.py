"""The DEALER socket a client talks through, and what its socket monitor says about the
connection (as common/handshake_monitor.h reads it for the C++ client):

* the handshake succeeded: something that speaks ZeroMQ (with CURVE: the coordinator
  whose public key we pin, admitting our key) answers at the endpoint;
* a refused handshake is an error at once, and stays one (libzmq does not retry it):
  PermissionDenied (a key not admitted, or a CURVE handshake dropped, which a wrong
  server key causes), ResourceExhausted (the coordinator's client-connection limit),
  FailedPrecondition (CURVE on one side only);
* an established connection that closed means the coordinator stopped or crashed: the
  requests in flight will get no reply (the socket reconnects by itself for later ones).

Used by both clients; no waiting here.
"""

from __future__ import annotations

from typing import Optional, Tuple

import zmq
from zmq.utils.monitor import parse_monitor_message

from .errors import ConnectionError, FloverError
from .keys import CurveKeys
from .wire import MAX_SERVER_MESSAGE_BYTES

# Replies that may wait unread (many requests sent before the first read), as client.h.
_MAX_UNREAD_REPLIES = 100000

_EVENTS = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_DISCONNECTED
)

_KEY_ARGS = "client_key= and server_key="


def open_socket(context: zmq.Context, endpoint: str, keys: Optional[CurveKeys]) -> Tuple[zmq.Socket, zmq.Socket]:
    """A DEALER connecting to `endpoint`, and the PAIR socket of its monitor. The socket
    type follows the context (zmq.asyncio contexts give asyncio sockets)."""
    socket = context.socket(zmq.DEALER)
    try:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, _MAX_UNREAD_REPLIES)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_SERVER_MESSAGE_BYTES)
        if keys is not None:
            socket.curve_publickey = keys.public_key
            socket.curve_secretkey = keys.secret_key
            socket.curve_serverkey = keys.server_key
        monitor = socket.get_monitor_socket(_EVENTS)
        monitor.setsockopt(zmq.LINGER, 0)
        socket.connect(endpoint)
    except zmq.ZMQError as error:
        socket.close(linger=0)
        raise FloverError("InvalidArgument", f"cannot connect to {endpoint}: {error}") from None
    return socket, monitor


def connect_timeout_error(endpoint: str, seconds: float) -> ConnectionError:
    return ConnectionError(
        f"nothing answered at {endpoint} within {seconds:g} s: is the coordinator running, and is this its "
        "client endpoint (endpoints.client)? (connect_timeout= waits longer)"
    )


def closed_error(endpoint: str, request_id: Optional[str] = None) -> ConnectionError:
    return ConnectionError(
        f"the connection to the coordinator at {endpoint} closed (it stopped or crashed): no reply will come "
        "for the requests in flight",
        request_id,
    )


def silence_error(endpoint: str, seconds: float, request_id: Optional[str] = None) -> ConnectionError:
    return ConnectionError(f"no reply from the coordinator at {endpoint} for {seconds:g} s", request_id)


class ConnectionState:
    """What the monitor events said so far. feed() takes each event in order."""

    def __init__(self, endpoint: str, curve: bool) -> None:
        self.endpoint = endpoint
        self.curve = curve
        self.established = False  # a handshake succeeded (the connection may have closed since)
        self._handshaking = False
        self._refusal: Optional[FloverError] = None

    def check(self) -> None:
        """Raises the refusal, if the coordinator refused the connection."""
        if self._refusal is not None:
            raise self._refusal

    def feed(self, frames) -> bool:
        """Applies one monitor message (its frames); True when an established connection
        closed. Raises (now and at every later check()) for a refused handshake."""
        self.check()
        message = parse_monitor_message(frames)
        event, value = message["event"], message["value"]
        if event == zmq.EVENT_CONNECTED:
            self._handshaking = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._handshaking = False
            self.established = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self._refuse(self._auth_error(value))
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH and self.curve:
                self._refuse(FloverError(
                    "FailedPrecondition",
                    f"the coordinator at {self.endpoint} does not use CURVE (its config has no security mode "
                    f"curve): connect without {_KEY_ARGS}",
                ))
            self._refuse(self._dropped_error())
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self._refuse(self._dropped_error())
        elif event == zmq.EVENT_DISCONNECTED:
            if self._handshaking:
                self._refuse(self._dropped_error())
            return True
        return False

    def _refuse(self, error: FloverError) -> None:
        self._refusal = error
        raise error

    def _auth_error(self, zap_status: int) -> FloverError:
        who = f"the coordinator at {self.endpoint}"
        if zap_status == 500:
            return FloverError(
                "ResourceExhausted",
                f"{who} refused the connection: it has as many client connections as it allows "
                "(limits.max_client_connections); try again later",
            )
        return FloverError(
            "PermissionDenied",
            f"{who} refused this client's key (ZAP status {zap_status}): its public key is not among the client "
            "keys the coordinator admits (security.client_keys or admin_keys; docs/security.md)",
        )

    def _dropped_error(self) -> FloverError:
        who = f"the coordinator at {self.endpoint}"
        if self.curve:
            return FloverError(
                "PermissionDenied",
                f"{who} dropped the connection during the CURVE handshake: is the server key this client pins "
                f"(server_key=) the coordinator's public key (security.coordinator_public_key)?",
            )
        return FloverError(
            "FailedPrecondition",
            f"{who} requires CURVE: give this client its key pair and the coordinator's public key "
            f"({_KEY_ARGS}; docs/security.md)",
        )
