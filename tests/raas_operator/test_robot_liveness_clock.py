"""The operator judges a robot's liveness on its own clock (issue 18, item 6: a Raspberry Pi has no
real-time clock, and liveness compared the Pi's stamps with the server's clock against 30 s).

The cache notes when it saw each Robot's heartbeat stamp change (`ClusterRobot.heard_at`); the
scheduler's view and the effective phase count from there. An agent whose clock is minutes
behind is alive from its next beat on; one whose clock is minutes ahead is Offline once it stops
beating, not minutes later; a resync that brings the same stamp does not make a robot younger.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from raas_operator.reconcile.schedule import effective_phase, robot_view
from raas_operator.robots.model import RobotPhase
from raas_operator.runtime.cache import ClusterCache

TIMEOUT = timedelta(seconds=30)


def robot(beat: datetime, version: int) -> dict[str, Any]:
    return {
        "metadata": {"name": "pendulum-1", "resourceVersion": str(version)},
        "spec": {"node_name": "pi-1"},
        "status": {"phase": "Ready", "last_heartbeat": beat.isoformat()},
    }


def judged(cache: ClusterCache, now: datetime) -> tuple[RobotPhase, bool]:
    cached = cache.robot("pendulum-1")
    assert cached is not None
    entry = cached.entry
    return effective_phase(entry.robot, now, TIMEOUT, entry.heard_at), robot_view(entry, now, TIMEOUT).ready


def test_an_agent_whose_clock_is_ten_minutes_behind_is_alive_from_its_next_beat() -> None:
    cache = ClusterCache()
    skew = timedelta(minutes=10)
    started = datetime.now(timezone.utc)
    cache.put_robot(robot(started - skew, 1))
    # Seen for the first time, a stamp from the past is taken as it is (a dead robot gets no grace)...
    assert judged(cache, datetime.now(timezone.utc)) == (RobotPhase.OFFLINE, False)
    cache.put_robot(robot(started - skew + timedelta(seconds=5), 2))  # ...its next beat
    now = datetime.now(timezone.utc)
    assert judged(cache, now) == (RobotPhase.READY, True)
    assert judged(cache, now + timedelta(seconds=25)) == (RobotPhase.READY, True)  # on the operator's clock
    assert judged(cache, now + timedelta(seconds=31)) == (RobotPhase.OFFLINE, False)  # silent for the timeout


def test_an_agent_whose_clock_is_ten_minutes_ahead_is_offline_once_it_stops_beating() -> None:
    cache = ClusterCache()
    ahead = datetime.now(timezone.utc) + timedelta(minutes=10)
    cache.put_robot(robot(ahead, 1))
    cache.put_robot(robot(ahead + timedelta(seconds=5), 2))
    now = datetime.now(timezone.utc)
    assert judged(cache, now) == (RobotPhase.READY, True)
    # Its last stamp lies minutes in the future; by the agent's word it would be alive until then.
    assert judged(cache, now + timedelta(seconds=31)) == (RobotPhase.OFFLINE, False)


def test_the_same_stamp_again_does_not_make_a_robot_younger() -> None:
    cache = ClusterCache()
    beat = datetime.now(timezone.utc)
    cache.put_robot(robot(beat, 1))
    heard = cache.robot("pendulum-1")
    assert heard is not None
    cache.put_robot(robot(beat, 2))  # another write to the Robot (a booking), or a resync's list
    cache.replace_robots([robot(beat, 3)], "3")
    again = cache.robot("pendulum-1")
    assert again is not None
    assert again.entry.heard_at == heard.entry.heard_at
