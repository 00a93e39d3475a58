"""A job's control rate (issue 17): in the RaasJob spec and the CRD, advertised by each Robot, and
honoured by the scheduler (only robots running the rate take the job; a rate no robot of the
fleet runs is refused with a sentence); the run pod tells the controller its rate."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from crd_validation import schema_errors
from pydantic import ValidationError

from raas_operator.crds import raasjob_crd, robot_crd
from raas_operator.jobs.model import JobSpec, JobStatus
from raas_operator.pods.builder import PodSettings, job_pod
from raas_operator.reconcile.schedule import ClusterRobot, QueuedJob, plan, robot_view
from raas_operator.robots.model import Robot, RobotPhase, RobotSpec, RobotStatus
from raas_operator.scheduling.core import Quotas, RobotView, WaitingJob, schedule

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
SOURCE = {"kind": "git", "url": "https://github.com/a/c.git"}


def robot(name: str, rates: tuple[float, ...] | None = None) -> Robot:
    status: dict[str, Any] = {"phase": RobotPhase.READY, "last_heartbeat": NOW - timedelta(seconds=1)}
    if rates is not None:
        status["supported_control_hz"] = rates
    return Robot(name=name, spec=RobotSpec(node_name=f"node-{name}"), status=RobotStatus(**status))


def queued(name: str, minutes_ago: int = 1, **spec: object) -> QueuedJob:
    body = {"owner": "ada", "source": SOURCE, **spec}
    return QueuedJob(name, JobSpec.model_validate(body), JobStatus(), NOW - timedelta(minutes=minutes_ago))


def raasjob(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "raas.dev/v1alpha1", "kind": "RaasJob", "metadata": {"name": "job-1"}, "spec": spec}


# --- the spec, the model and the CRD ---------------------------------------------------------------


def test_a_job_runs_at_20_hz_unless_it_asks_for_another_rate() -> None:
    assert JobSpec.model_validate({"owner": "ada", "source": SOURCE}).control_hz == 20.0
    assert JobSpec.model_validate({"owner": "ada", "source": SOURCE, "control_hz": 100}).control_hz == 100.0
    assert schema_errors(raasjob_crd(), raasjob({"owner": "ada", "source": SOURCE, "control_hz": 50})) == []


@pytest.mark.parametrize("rate", [0, -20, 10**9, math.nan, math.inf, "50", "fast", True, None, [50]])
def test_an_impossible_rate_is_refused_by_the_model(rate: object) -> None:
    with pytest.raises(ValidationError, match="control_hz"):
        JobSpec.model_validate({"owner": "ada", "source": SOURCE, "control_hz": rate})


@pytest.mark.parametrize("rate", [0, -20, 10**9, 5, "50", "fast", True, None, [50]])
def test_an_impossible_rate_is_refused_by_the_crd_schema(rate: object) -> None:
    """(NaN and infinities have no JSON spelling: a request carrying one is not JSON at all.)"""
    assert schema_errors(raasjob_crd(), raasjob({"owner": "ada", "source": SOURCE, "control_hz": rate})) != []


def test_a_robot_status_lists_its_rates_and_an_old_agents_robot_runs_20_hz_only() -> None:
    document: dict[str, Any] = {"apiVersion": "raas.dev/v1alpha1", "kind": "Robot", "metadata": {"name": "r1"},
                "spec": {"node_name": "n1"}, "status": {"supported_control_hz": [20, 50, 100]}}  # fmt: skip
    assert schema_errors(robot_crd(), document) == []
    document["status"]["supported_control_hz"] = [0]
    assert schema_errors(robot_crd(), document) != []
    assert robot("old").status.supported_control_hz == (20.0,)
    assert robot("new", (20.0, 50.0, 100.0)).supports_control_hz(50.0)


# --- the scheduler -----------------------------------------------------------------------------------


def test_a_job_goes_only_to_a_robot_that_runs_its_rate() -> None:
    fleet = [ClusterRobot(robot("slow-1")), ClusterRobot(robot("fast-1", (20.0, 50.0, 100.0)))]
    assert robot_view(fleet[1], NOW).control_hz == (20.0, 50.0, 100.0)
    decision = plan([queued("job-100", minutes_ago=2, control_hz=100), queued("job-20")], fleet, {}, Quotas(), NOW)
    assert sorted((a.job_id, a.robot) for a in decision.assignments) == [("job-100", "fast-1"), ("job-20", "slow-1")]


def test_a_job_waits_for_the_robot_that_runs_its_rate_rather_than_take_another() -> None:
    fleet = [ClusterRobot(robot("slow-1")), ClusterRobot(robot("fast-1", (20.0, 100.0)), booked_job="job-0")]
    decision = plan([queued("job-100", control_hz=100)], fleet, {}, Quotas(), NOW)
    assert decision.assignments == ()
    assert decision.rejections == ()
    assert [entry.job_id for entry in decision.queue] == ["job-100"]
    assert decision.queue[0].estimated_start_s is not None  # when fast-1 is expected free


def test_a_rate_no_robot_of_the_fleet_runs_is_refused_with_the_rates_there_are() -> None:
    fleet = [ClusterRobot(robot("slow-1")), ClusterRobot(robot("fast-1", (20.0, 50.0)))]
    decision = plan(
        [queued("job-100", control_hz=100), queued("job-named", robot={"name": "slow-1"}, control_hz=50)],
        fleet,
        {},
        Quotas(),
        NOW,
    )
    assert decision.assignments == ()
    reasons = {rejection.job_id: rejection for rejection in decision.rejections}
    assert set(reasons) == {"job-100", "job-named"}
    assert reasons["job-100"].reason == "NoMatchingRobot"
    assert "100 Hz" in reasons["job-100"].message
    assert "20, 50" in reasons["job-100"].message
    assert "50 Hz" in reasons["job-named"].message
    assert "ask for one of 20 Hz" in reasons["job-named"].message


def test_queue_estimates_book_only_robots_that_run_the_rate() -> None:
    robots = [RobotView("slow", ready=False, free_at_s=10.0), RobotView("fast", ready=False, free_at_s=100.0,
              control_hz=(20.0, 50.0))]  # fmt: skip
    waiting = [WaitingJob("job-50", "ada", 1.0, control_hz=50.0), WaitingJob("job-20", "bob", 2.0)]
    decision = schedule(waiting, robots, {}, Quotas(), now_s=0.0)
    estimates = {entry.job_id: entry.estimated_start_s for entry in decision.queue}
    assert estimates == {"job-50": 100.0, "job-20": 10.0}


# --- the run pod ---------------------------------------------------------------------------------------


def test_the_run_pod_tells_the_controller_its_rate() -> None:
    spec = JobSpec.model_validate({"owner": "ada", "source": SOURCE, "control_hz": 50})
    pod = job_pod(
        job_name="job-1", namespace="raas-jobs", job_uid="uid-1", spec=spec, robot="r1", commit="a" * 40,
        code_url="http://minio/code", settings=PodSettings(image="raas-runtime:test"),
    )  # fmt: skip
    controller = next(c for c in pod["spec"]["containers"] if c["name"] == "controller")
    assert {"name": "RAAS_CONTROL_HZ", "value": "50"} in controller["env"]
