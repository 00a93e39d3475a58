"""The robot session protocol (job ⇄ robot agent), defined once for both sides.

Transport: a Unix stream socket. Framing: a 4-byte big-endian length, then that many bytes of
UTF-8 JSON (never pickle: a frame is data, not code). Every message is a JSON object with a
``type`` and the protocol version ``v``; `decode_message` checks it against the schema of its
type and raises `ProtocolError` with a message that says what was wrong.

A session::

    client → hello {token}            agent → welcome {session, robot, params, dt}
    client → reset {}                 agent → observation {...}   (pendulum at rest, hanging)
    client → step {action}            agent → observation {...}   (at the next clock boundary)
    ...
    client → close {}                 agent → bye {reason}

Any message may be answered by ``error {code, message}``; after a protocol error the agent
closes the session.
"""

from gym_raas.protocol.framing import MAX_FRAME_BYTES, FrameReader, encode_frame
from gym_raas.protocol.messages import PROTOCOL_VERSION, ProtocolError, decode_message, encode_message

__all__ = [
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "FrameReader",
    "ProtocolError",
    "decode_message",
    "encode_frame",
    "encode_message",
]
