"""``raas-agent``: run a robot agent, a virtual rig, or a calibration.

raas-agent run --robot pendulum-1 --driver pigpio --socket /run/raas/agent.sock [--kubernetes]
raas-agent virtual-rig --port 8888
raas-agent calibrate --robot pendulum-1 --driver pigpio --output pendulum-1.json

With ``--kubernetes`` (the DaemonSet) the agent creates and heartbeats its Robot object and takes
the jobs the operator books on it. The robot's name defaults to its node's ``raas.dev/robot``
label (``$NODE_NAME`` from the downward API); the rest comes from the environment:

* ``RAAS_AGENT_ROBOT``: the robot's name, instead of the node's label;
* ``RAAS_AGENT_SESSION_KEY``: the HMAC key shared with the operator (without it the agent takes
  no jobs from the cluster);
* ``RAAS_AGENT_JOB_NAMESPACE``: where the RaasJobs live (default ``raas``);
* ``RAAS_AGENT_S3_ENDPOINT`` (host:port), ``RAAS_AGENT_S3_ACCESS_KEY``, ``RAAS_AGENT_S3_SECRET_KEY``,
  ``RAAS_AGENT_S3_BUCKET`` (default ``raas-results``), ``RAAS_AGENT_S3_SECURE`` (default true):
  where the agent uploads a job's trajectory and session record.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gym_raas.params import PendulumParams, load_calibration
from raas_node import virtual_rig
from raas_node.agent.agent import AgentConfig, RobotAgent
from raas_node.agent.calibration import calibrate_robot
from raas_node.agent.metrics import AgentMetrics
from raas_node.agent.settings import ROBOT_LABEL, ClusterSettings
from raas_node.drivers.base import DriverError, RobotDriver
from raas_node.drivers.config import DriverConfigError, PigpioDriverConfig
from raas_node.drivers.wiring_arguments import add_wiring_arguments, wiring_from_arguments

if TYPE_CHECKING:
    from raas_node.agent.cluster import RobotHeartbeat


log = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT_S = 600.0
"""How long a stopping agent in a cluster lets its running session finish (the chart's
``agent.drainTimeoutS``; the pod's termination grace period is longer)."""
MAX_DRAIN_TIMEOUT_S = 3600.0
"""A job's longest time limit: no session outlasts it."""
DEFAULT_CALIBRATION = Path("/var/lib/raas/calibration.json")
"""Where `raas-agent run` finds the robot's calibration when no --calibration is given and
`CALIBRATION_ENV` is unset (the DaemonSet mounts the Pi's state folder; `raas-agent calibrate
--output` writes the file there)."""
CALIBRATION_ENV = "RAAS_AGENT_CALIBRATION"
"""The calibration file `raas-agent run` takes when it exists (the chart sets it to
``<agent.stateDir>/calibration.json``); a missing one means the reference rig's parameters."""


def _calibration_file(arguments: argparse.Namespace) -> Path | None:
    """--calibration (which must exist), else the run's default file if it exists (logged either way)."""
    if arguments.calibration is not None or arguments.command != "run":
        return cast(Path | None, arguments.calibration)
    default = Path(os.environ.get(CALIBRATION_ENV) or DEFAULT_CALIBRATION)
    if default.is_file():
        log.info("calibration: %s", default)
        return default
    log.warning("no calibration file at %s: the robot runs with the reference rig's parameters", default)
    return None


def _driver(arguments: argparse.Namespace) -> RobotDriver:
    calibration = _calibration_file(arguments)
    params = load_calibration(calibration) if calibration else PendulumParams()
    if arguments.driver == "sim":
        from raas_node.drivers.sim_driver import SimDriver

        return SimDriver(params)
    from raas_node.drivers.pigpio_driver import PigpioDriver

    config = PigpioDriverConfig(
        host=arguments.pigpio_host, port=arguments.pigpio_port, wiring=wiring_from_arguments(arguments)
    )
    return PigpioDriver(config, params)


def _add_robot_arguments(parser: argparse.ArgumentParser, *, robot_required: bool = True) -> None:
    parser.add_argument(
        "--robot", required=robot_required, help="robot name (with --kubernetes: the node's raas.dev/robot label)"
    )
    parser.add_argument("--driver", choices=("sim", "pigpio"), default="pigpio")
    parser.add_argument("--pigpio-host", default="127.0.0.1")
    parser.add_argument("--pigpio-port", type=int, default=8888)
    add_wiring_arguments(parser)
    parser.add_argument(
        "--calibration", type=Path, help=f"the robot's calibration file (run: {DEFAULT_CALIBRATION} if it exists)"
    )


def _run(arguments: argparse.Namespace) -> int:
    settings = ClusterSettings.from_environment()
    robot = _robot_name(arguments, settings)
    driver = _driver(arguments)
    metrics = AgentMetrics(robot)
    metrics.robot_info("pendulum", arguments.driver, "0.1.0")
    config = AgentConfig(robot=robot, socket_path=arguments.socket, recordings_dir=arguments.recordings)
    agent = RobotAgent(driver, config, metrics).start()
    heartbeat = _heartbeat(arguments, agent, settings).start() if arguments.kubernetes else None
    port = metrics.serve(arguments.metrics_host, arguments.metrics_port)
    log.info("agent %s serving %s, metrics on port %d", robot, arguments.socket, port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    if heartbeat is not None:  # a rollout or a node drain: let the running job finish first
        heartbeat.drain(arguments.drain_timeout)
        heartbeat.stop()
    agent.stop()
    metrics.stop_serving()
    driver.close()
    return 0


def _heartbeat(arguments: argparse.Namespace, agent: RobotAgent, settings: ClusterSettings) -> RobotHeartbeat:
    """The Robot heartbeat, with the pod's service account in a pod, else the kubeconfig."""
    from kubernetes import client

    from raas_node.agent.cluster import RobotHeartbeat

    api = client.CustomObjectsApi(client.ApiClient(_kubernetes_configuration()))
    return RobotHeartbeat(
        agent, api, robot=agent.config.robot, node=arguments.node_name, interval_s=arguments.heartbeat_interval,
        robot_type=agent.config.robot_type, job_namespace=settings.job_namespace, session_key=settings.session_key,
        results=settings.result_store(),
    )  # fmt: skip


def _kubernetes_configuration() -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = 0  # the next beat is the retry (and an outage logs one line, not three a beat)
    return configuration


def _robot_name(arguments: argparse.Namespace, settings: ClusterSettings) -> str:
    """`--robot`, else ``RAAS_AGENT_ROBOT``, else (with ``--kubernetes``) the node's robot label."""
    if arguments.robot:
        return str(arguments.robot)
    if settings.robot:
        return settings.robot
    if not arguments.kubernetes:
        raise SystemExit("raas-agent run: give the robot's name with --robot (or RAAS_AGENT_ROBOT)")
    from kubernetes import client

    node = client.CoreV1Api(client.ApiClient(_kubernetes_configuration())).read_node(arguments.node_name)
    name = ((node.metadata.labels if node.metadata else None) or {}).get(ROBOT_LABEL)
    if not name:
        raise SystemExit(f"raas-agent run: node {arguments.node_name} has no {ROBOT_LABEL} label (not a robot node)")
    return str(name)


def _calibrate(arguments: argparse.Namespace) -> int:
    driver = _driver(arguments)
    try:
        result = calibrate_robot(driver, arguments.output, robot=arguments.robot, recordings=arguments.recordings)
    finally:
        driver.close()
    print(f"calibration written to {arguments.output} (fit error {result.rmse_rad:.4f} rad)")
    for fit in result.per_trajectory:
        print(f"  {fit.label:<18} rmse {fit.rmse_rad:.4f} rad over {fit.samples} samples")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raas-agent", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="serve control sessions for one robot")
    _add_robot_arguments(run, robot_required=False)
    run.add_argument("--socket", type=Path, default=Path("/run/raas/agent.sock"))
    run.add_argument("--recordings", type=Path, default=Path("/var/lib/raas/recordings"))
    run.add_argument("--metrics-host", default="0.0.0.0")
    run.add_argument("--metrics-port", type=int, default=9105)
    run.add_argument("--kubernetes", action="store_true", help="create and heartbeat this robot's Robot object")
    run.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="Kubernetes node (default: $NODE_NAME)")
    run.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds between Robot status updates")
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=DEFAULT_DRAIN_TIMEOUT_S,
        help="with --kubernetes, on SIGTERM: seconds to let a running session finish and upload, taking no new job",
    )
    run.set_defaults(handler=_run)
    calibrate = commands.add_parser("calibrate", help="run calibration experiments and fit the robot's model")
    _add_robot_arguments(calibrate)
    calibrate.add_argument("--output", type=Path, required=True)
    calibrate.add_argument(
        "--recordings",
        type=Path,
        default=Path("/var/lib/raas/recordings"),
        help="the agent's session recordings, whose median actuation latency the calibration takes",
    )
    calibrate.set_defaults(handler=_calibrate)
    rig = commands.add_parser(
        "virtual-rig", help="a pigpiod-compatible server backed by the rig physics", add_help=False
    )
    rig.set_defaults(handler=None)
    arguments, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO if arguments.verbose else logging.WARNING)
    if arguments.command == "virtual-rig":
        return virtual_rig.main(rest)
    if rest:
        parser.error(f"unrecognised arguments: {' '.join(rest)}")
    if arguments.command == "run" and arguments.kubernetes and not arguments.node_name:
        parser.error("--kubernetes needs the node's name: pass --node-name or set NODE_NAME (downward API)")
    if arguments.command == "run" and arguments.heartbeat_interval <= 0:
        parser.error("--heartbeat-interval must be a positive number of seconds")
    if arguments.command == "run" and not 0 <= arguments.drain_timeout <= MAX_DRAIN_TIMEOUT_S:
        parser.error(f"--drain-timeout must be between 0 and {MAX_DRAIN_TIMEOUT_S:.0f} seconds")
    try:
        return int(arguments.handler(arguments))
    except DriverConfigError as error:  # an impossible wiring or PWM setting: say which, no traceback
        parser.error(str(error))
    except DriverError as error:  # pigpiod unreachable or failing: one line (a DaemonSet pod restarts)
        print(f"raas-agent: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
