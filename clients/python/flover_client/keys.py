"""CURVE key files as ``flover keygen`` writes them (common/curve_keys.h,
docs/security.md): small text files of ``name: value`` lines, ``#`` comments and blank
lines ignored, keys as 40 Z85 characters.

    NAME.key   the key pair (mode 0600): ``public-key: ...`` and ``secret-key: ...``
    NAME.pub   the public key alone: ``public-key: ...``

The readers check what Flover's own do: the file's mode (a key pair readable by group
or others is refused, like ssh does), unknown or repeated names, the Z85 form, and that
a key pair's public key is the one of its secret key.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import zmq

from .errors import FloverError

_Z85_CHARS = 40
_Z85_ALPHABET = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#")
_MAX_FILE_BYTES = 64 << 10
_PUBLIC = "public-key"
_SECRET = "secret-key"


@dataclass(frozen=True)
class CurveKeys:
    """A client's CURVE credentials, as the socket options want them (Z85 bytes)."""

    public_key: bytes  # this client's
    secret_key: bytes  # this client's
    server_key: bytes  # the coordinator's public key, pinned

    def __repr__(self) -> str:  # never print the secret
        return f"CurveKeys(public_key={self.public_key!r}, server_key={self.server_key!r})"


def _invalid(message: str) -> FloverError:
    return FloverError("InvalidArgument", message)


def _read(path: str, secret: bool) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise FloverError("NotFound", f"{path}: key file not found") from None
    except OSError as error:
        raise FloverError("IoError", f"{path}: cannot open the key file: {error.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _invalid(f"{path}: not a regular file")
        if secret and st.st_mode & 0o077:
            raise FloverError(
                "PermissionDenied",
                f"{path}: permissions {stat.S_IMODE(st.st_mode):04o} are too open: a secret key must be "
                f"readable by its owner only; run chmod 600 {path}",
            )
        if st.st_size > _MAX_FILE_BYTES:
            raise _invalid(f"{path}: {st.st_size} bytes is too large for a key file")
        data = f.read(_MAX_FILE_BYTES + 1)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid(f"{path}: not a text file") from None


def _check_z85(path: str, line_no: int, name: str, value: str) -> None:
    if len(value) != _Z85_CHARS:
        raise _invalid(f"{path}: line {line_no}: '{name}' must be {_Z85_CHARS} Z85 characters, got {len(value)}")
    bad = next((c for c in value if c not in _Z85_ALPHABET), None)
    if bad is not None:
        raise _invalid(f"{path}: line {line_no}: '{name}' has a character that is not Z85: '{bad}'")


def _parse(path: str, text: str, allowed: Tuple[str, ...]) -> Dict[str, Tuple[str, int]]:
    values: Dict[str, Tuple[str, int]] = {}
    for line_no, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise _invalid(f"{path}: line {line_no}: expected 'public-key: <Z85>' or a '#' comment, got '{line[:80]}'")
        name, value = name.strip(" \t"), value.strip(" \t")
        if name not in allowed:
            if name == _SECRET:
                raise _invalid(f"{path}: line {line_no}: a secret key has no place in a public key file")
            expected = " or ".join(f"'{a}'" for a in allowed)
            raise _invalid(f"{path}: line {line_no}: unknown name '{name[:40]}' (expected {expected})")
        if name in values:
            raise _invalid(f"{path}: line {line_no}: '{name}' is given twice")
        _check_z85(path, line_no, name, value)
        values[name] = (value, line_no)
    return values


def load_key_pair(path: str) -> Tuple[bytes, bytes]:
    """(public, secret) Z85 keys of a NAME.key file. Raises FloverError."""
    values = _parse(path, _read(path, secret=True), (_PUBLIC, _SECRET))
    for name in (_PUBLIC, _SECRET):
        if name not in values:
            raise _invalid(f"{path}: no '{name}: <Z85>' line (is it a key pair file, NAME.key?)")
    public, public_line = values[_PUBLIC]
    secret, secret_line = values[_SECRET]
    if zmq.curve_public(secret.encode()) != public.encode():
        raise _invalid(
            f"{path}: line {public_line}: the public key is not the one of the secret key on line {secret_line} "
            "(the file was edited or mixed up)"
        )
    return public.encode(), secret.encode()


def load_public_key(path: str) -> bytes:
    """The Z85 public key of a NAME.pub file. Raises FloverError."""
    values = _parse(path, _read(path, secret=False), (_PUBLIC,))
    if _PUBLIC not in values:
        raise _invalid(f"{path}: no 'public-key: <Z85>' line")
    return values[_PUBLIC][0].encode()


def load_client_keys(client_key: Optional[str], server_key: Optional[str]) -> Optional[CurveKeys]:
    """The credentials of a client of a cluster with ``security.mode: curve``: its key
    pair file (``client_key``, NAME.key) and the coordinator's public key file
    (``server_key``, NAME.pub, which the client pins). None when neither is given;
    FloverError(InvalidArgument) when only one is."""
    if not client_key and not server_key:
        return None
    if not client_key or not server_key:
        given = "the server key" if server_key else "the key pair"
        raise _invalid(
            "CURVE needs both the client's key pair (client_key) and the coordinator's public key "
            f"(server_key); only {given} was given"
        )
    public, secret = load_key_pair(client_key)
    return CurveKeys(public_key=public, secret_key=secret, server_key=load_public_key(server_key))
