"""``raas-agent``: run a robot agent, a virtual rig, or a calibration.

raas-agent run --robot pendulum-1 --driver pigpio --socket /run/raas/agent.sock
raas-agent virtual-rig --port 8888
raas-agent calibrate --robot pendulum-1 --driver pigpio --output pendulum-1.json
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from gym_raas.params import PendulumParams, load_calibration
from raas_node import virtual_rig
from raas_node.agent.agent import AgentConfig, RobotAgent
from raas_node.agent.calibration import calibrate_robot
from raas_node.agent.metrics import AgentMetrics
from raas_node.drivers.base import RobotDriver
from raas_node.drivers.config import PigpioDriverConfig


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
    port = metrics.serve(arguments.metrics_host, arguments.metrics_port)
    logging.getLogger(__name__).info("agent %s serving %s, metrics on port %d", arguments.robot, arguments.socket, port)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    agent.stop()
    metrics.stop_serving()
    driver.close()
    return 0


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
    return int(arguments.handler(arguments))


if __name__ == "__main__":
    raise SystemExit(main())
