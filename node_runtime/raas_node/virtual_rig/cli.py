"""Command line of the virtual rig (``python -m raas_node.virtual_rig``; reused by the agent CLI)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from gym_raas.params import CalibrationError, PendulumParams, load_calibration
from gym_raas.simulator import HANGING_RAD
from raas_node.drivers.config import DriverConfigError
from raas_node.drivers.wiring_arguments import add_wiring_arguments, wiring_from_arguments
from raas_node.virtual_rig.server import VirtualRig

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The virtual rig's arguments (the agent CLI may embed them as a sub-command)."""
    parser = argparse.ArgumentParser(
        prog="python -m raas_node.virtual_rig",
        description="Serve a pigpiod-compatible virtual pendulum rig backed by the gym_raas physics.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8888, help="TCP port (default 8888, pigpiod's; 0 = any free)")
    parser.add_argument("--calibration", help="calibration JSON of the robot to emulate (default: reference rig)")
    parser.add_argument("--initial-angle-rad", type=float, default=HANGING_RAD, help="start angle from upright")
    add_wiring_arguments(parser)
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a virtual rig until SIGINT/SIGTERM; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0–65535, got {args.port}")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = load_calibration(args.calibration) if args.calibration else PendulumParams()
        wiring = wiring_from_arguments(args)
    except (CalibrationError, DriverConfigError) as error:
        logger.error("%s", error)
        return 2
    rig = VirtualRig(params, wiring, host=args.host, port=args.port, initial_theta_rad=args.initial_angle_rad)
    try:
        asyncio.run(_serve_until_signalled(rig))
    except OSError as error:
        logger.error("cannot listen on %s:%d: %s", args.host, args.port, error)
        return 1
    return 0


async def _serve_until_signalled(rig: VirtualRig) -> None:
    serving = asyncio.create_task(rig.serve())
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, serving.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serving
