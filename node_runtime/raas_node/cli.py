"""``raas-agent``: run a robot agent, a virtual rig, or a calibration.

raas-agent run --robot pendulum-1 --driver pigpio --socket /run/raas/agent.sock [--kubernetes]
raas-agent virtual-rig --port 8888
raas-agent calibrate --robot pendulum-1 --driver pigpio --output pendulum-1.json
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gym_raas.params import PendulumParams, load_calibration
from raas_node import virtual_rig
from raas_node.agent.agent import AgentConfig, RobotAgent
from raas_node.agent.calibration import calibrate_robot
from raas_node.agent.metrics import AgentMetrics
from raas_node.drivers.base import RobotDriver
from raas_node.drivers.config import PigpioDriverConfig

if TYPE_CHECKING:
    from raas_node.agent.cluster import RobotHeartbeat


def _driver(arguments: argparse.Namespace) -> RobotDriver:
    params = load_calibration(arguments.calibration) if arguments.calibration else PendulumParams()
    if arguments.driver == "sim":
        from raas_node.drivers.sim_driver import SimDriver

        return SimDriver(params)
    from raas_node.drivers.pigpio_driver import PigpioDriver

    return PigpioDriver(PigpioDriverConfig(host=arguments.pigpio_host, port=arguments.pigpio_port), params)


def _add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", required=True, help="robot name (the node's raas.dev/robot label)")
    parser.add_argument("--driver", choices=("sim", "pigpio"), default="pigpio")
    parser.add_argument("--pigpio-host", default="127.0.0.1")
    parser.add_argument("--pigpio-port", type=int, default=8888)
    parser.add_argument("--calibration", type=Path, help="the robot's calibration file")


def _run(arguments: argparse.Namespace) -> int:
    driver = _driver(arguments)
    metrics = AgentMetrics(arguments.robot)
    metrics.robot_info("pendulum", arguments.driver, "0.1.0")
    config = AgentConfig(robot=arguments.robot, socket_path=arguments.socket, recordings_dir=arguments.recordings)
    agent = RobotAgent(driver, config, metrics).start()
    heartbeat = _heartbeat(arguments, agent).start() if arguments.kubernetes else None
    port = metrics.serve(arguments.metrics_host, arguments.metrics_port)
    logging.getLogger(__name__).info("agent %s serving %s, metrics on port %d", arguments.robot, arguments.socket, port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    if heartbeat is not None:
        heartbeat.stop()
    agent.stop()
    metrics.stop_serving()
    driver.close()
    return 0


def _heartbeat(arguments: argparse.Namespace, agent: RobotAgent) -> RobotHeartbeat:
    """The Robot heartbeat, with the pod's service account in a pod, else the kubeconfig."""
    from kubernetes import client, config

    from raas_node.agent.cluster import RobotHeartbeat

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    configuration.retries = 0  # the next beat is the retry (and an outage logs one line, not three a beat)
    api = client.CustomObjectsApi(client.ApiClient(configuration))
    return RobotHeartbeat(
        agent, api, robot=arguments.robot, node=arguments.node_name, interval_s=arguments.heartbeat_interval,
        robot_type=agent.config.robot_type,
    )  # fmt: skip


def _calibrate(arguments: argparse.Namespace) -> int:
    driver = _driver(arguments)
    try:
        result = calibrate_robot(driver, arguments.output, robot=arguments.robot)
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
    _add_robot_arguments(run)
    run.add_argument("--socket", type=Path, default=Path("/run/raas/agent.sock"))
    run.add_argument("--recordings", type=Path, default=Path("/var/lib/raas/recordings"))
    run.add_argument("--metrics-host", default="0.0.0.0")
    run.add_argument("--metrics-port", type=int, default=9105)
    run.add_argument("--kubernetes", action="store_true", help="create and heartbeat this robot's Robot object")
    run.add_argument("--node-name", default=os.environ.get("NODE_NAME"), help="Kubernetes node (default: $NODE_NAME)")
    run.add_argument("--heartbeat-interval", type=float, default=5.0, help="seconds between Robot status updates")
    run.set_defaults(handler=_run)
    calibrate = commands.add_parser("calibrate", help="run calibration experiments and fit the robot's model")
    _add_robot_arguments(calibrate)
    calibrate.add_argument("--output", type=Path, required=True)
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
    return int(arguments.handler(arguments))


if __name__ == "__main__":
    raise SystemExit(main())
