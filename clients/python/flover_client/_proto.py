"""The protobuf classes of common/proto/flover.proto, generated at build time (never
committed): ``cmake --build build`` writes them into build/clients/python, and
``clients/python/generate_proto.sh`` into this folder."""

from __future__ import annotations

try:
    from . import flover_pb2 as pb  # noqa: F401 (re-exported)
except ImportError as error:  # pragma: no cover - a setup error, reported clearly
    raise ImportError(
        "flover_client: the generated module flover_pb2 is missing: build it with "
        "`cmake --build build` (then use build/clients/python) or run "
        "clients/python/generate_proto.sh (needs protoc; Debian: protobuf-compiler "
        f"python3-protobuf): {error}"
    ) from error

__all__ = ["pb"]
