"""Length-prefixed frames over a stream socket."""

from __future__ import annotations

import socket
import struct

MAX_FRAME_BYTES = 64 * 1024
"""Largest frame either side accepts; a longer announced length ends the session."""
_HEADER = struct.Struct(">I")


class FrameError(ConnectionError):
    """The byte stream is not a sequence of valid frames (or the peer went away mid-frame)."""


def encode_frame(payload: bytes) -> bytes:
    """Header + payload, ready to send."""
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return _HEADER.pack(len(payload)) + payload


class FrameReader:
    """Reads whole frames from a socket; `read` returns None at a clean end of stream."""

    def __init__(self, connection: socket.socket) -> None:
        self.connection = connection

    def read(self) -> bytes | None:
        header = self._read_exactly(_HEADER.size, allow_eof=True)
        if header is None:
            return None
        (length,) = _HEADER.unpack(header)
        if length > MAX_FRAME_BYTES:
            raise FrameError(f"announced frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
        payload = self._read_exactly(length, allow_eof=False)
        assert payload is not None
        return payload

    def _read_exactly(self, size: int, *, allow_eof: bool) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < size:
            chunk = self.connection.recv(size - len(chunks))
            if not chunk:
                if allow_eof and not chunks:
                    return None
                raise FrameError(f"connection closed after {len(chunks)} of {size} bytes")
            chunks += chunk
        return bytes(chunks)
