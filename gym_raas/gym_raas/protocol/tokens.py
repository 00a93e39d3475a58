"""Session tokens in the cluster: derived, never transported to the robot.

The operator gives a job pod the token ``HMAC-SHA256(key, "<robot>/<job>")`` (in a Secret); the
robot's agent, told by its Robot object which job is booked on it, computes the same token from
the same key and expects exactly that job. The key is shared by the operator and the agents only.
"""

from __future__ import annotations

import hashlib
import hmac


def session_token(key: bytes, robot: str, job: str) -> str:
    """The token that opens `job`'s session on `robot`."""
    if not key:
        raise ValueError("the session key is empty")
    return hmac.new(key, f"{robot}/{job}".encode(), hashlib.sha256).hexdigest()
