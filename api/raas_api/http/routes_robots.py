"""``/api/v1/robots``: state, health, current job and calibration of every robot."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from gym_raas.params import CALIBRATION_FORMAT
from raas_api.http.deps import Admin, Caller, State
from raas_api.http.errors import AUTHENTICATED, error_responses
from raas_api.http.schemas import MaintenanceRequest, RobotViewOut
from raas_api.http.views import robot_view
from raas_api.local.platform import RobotDetails

router = APIRouter(prefix="/api/v1/robots", tags=["robots"], responses=AUTHENTICATED)
_ROBOT = error_responses(404)


def _robot(state: State, name: str) -> RobotDetails:
    robot = next((robot for robot in state.platform.robot_details() if robot.name == name), None)
    if robot is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no robot {name!r}")
    return robot


@router.get("", summary="Every robot")
def list_robots(state: State, who: Caller) -> list[RobotViewOut]:
    return [robot_view(robot) for robot in state.platform.robot_details()]


@router.get("/{name}", summary="One robot", responses=_ROBOT)
def get_robot(name: str, state: State, who: Caller) -> RobotViewOut:
    return robot_view(_robot(state, name))


@router.get(
    "/{name}/calibration",
    summary="The robot's calibration file, to simulate exactly this robot with gym_raas",
    response_model=dict[str, Any],
    responses=_ROBOT,
)
def robot_calibration(name: str, state: State, who: Caller) -> Response:
    robot = _robot(state, name)
    document = {"format": CALIBRATION_FORMAT, "robot": robot.name, "params": robot.calibration}
    import json

    headers = {"Content-Disposition": f'attachment; filename="{robot.name}-calibration.json"'}
    return Response(
        json.dumps(document, indent=2, sort_keys=True) + "\n", media_type="application/json", headers=headers
    )


@router.put(
    "/{name}/maintenance",
    summary="Take a robot out of service, or put it back (admin)",
    responses=error_responses(403, 404),
)
def set_maintenance(name: str, body: MaintenanceRequest, state: State, who: Admin) -> RobotViewOut:
    _robot(state, name)
    state.platform.set_maintenance(name, body.on)
    return robot_view(_robot(state, name))
