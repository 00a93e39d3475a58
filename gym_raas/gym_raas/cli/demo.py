"""``raas demo``: run the bundled swing-up controller on the simulator and show the results.

The controller runs unmodified, as a separate process, as the platform runs users' code; the
trajectory comes from the environment itself (``RAAS_RECORD_PATH``), not from the controller.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from gym_raas.envs.pendulum import RECORD_PATH_ENV
from gym_raas.trajectory import Trajectory

PACKAGED_EXAMPLE = Path(__file__).resolve().parents[1] / "examples_data" / "swingup" / "run.py"
CHECKOUT_EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "swingup" / "run.py"


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="run the example swing-up controller and print where the results are")
    parser.add_argument("--output", type=Path, default=None, help="results folder (default: results/<time>-swingup)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated episode")
    parser.set_defaults(handler=run)


def example_controller() -> Path:
    """The swing-up example: the checkout's copy when run from one, else the packaged copy."""
    return CHECKOUT_EXAMPLE if CHECKOUT_EXAMPLE.is_file() else PACKAGED_EXAMPLE


def run(arguments: argparse.Namespace) -> int:
    output: Path = arguments.output or Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-swingup"
    output.mkdir(parents=True, exist_ok=True)
    controller = example_controller()
    print(f"RaaS demo: running {controller.name} (energy swing-up + LQR) on the simulated rig")
    environment = {**os.environ, RECORD_PATH_ENV: str((output / "trajectory.csv").resolve()), "MPLBACKEND": "Agg"}
    environment.pop("RAAS_AGENT_SOCKET", None)
    with (output / "stdout.txt").open("wb") as stdout, (output / "stderr.txt").open("wb") as stderr:
        completed = subprocess.run(
            [sys.executable, str(controller), "--seed", str(arguments.seed)],
            stdout=stdout, stderr=stderr, env=environment, cwd=controller.parent, check=False, timeout=300,
        )  # fmt: skip
    if completed.returncode != 0:
        print(f"the controller failed (exit {completed.returncode}); see {output / 'stderr.txt'}", file=sys.stderr)
        return 1
    return _summarise(output)


def _summarise(output: Path) -> int:
    from gym_raas.viz import animate_trajectory, plot_trajectory

    trajectory = Trajectory.from_csv(output / "trajectory.csv")
    summary = trajectory.summary()
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot = plot_trajectory(trajectory, output / "plot.png", title="RaaS demo: swing-up on the simulated rig")
    animation = animate_trajectory(trajectory, output / "animation.gif")
    swing = summary["swing_up_time_s"]
    print(f"  steps:          {summary['steps']}")
    print(f"  total reward:   {summary['total_reward']:.1f}")
    print(f"  swung up at:    {f'{swing:.2f} s' if swing is not None else 'never'}")
    print(f"  plot:           {plot}")
    print(f"  animation:      {animation}")
    print(f"  data:           {output / 'trajectory.csv'}")
    print(f"  stdout/stderr:  {output / 'stdout.txt'}, {output / 'stderr.txt'}")
    return 0
