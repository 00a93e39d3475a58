"""``raas demo`` on the local platform: simulated robots, the example controller, the results.

Starts a `LocalPlatform` with three simulated robots (real agents, physics in real time), submits
the bundled swing-up controller as a job, shows its progress (queue position, then steps run)
and copies the job's result bundle into ``results/<time>-swingup/``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from gym_raas.cli.demo import example_controller
from gym_raas.results.layout import ResultFile, result_key
from raas_api.local.platform import Isolation, LocalPlatform, PlatformConfig
from raas_operator.jobs.model import JobSpec, LocalSource, Phase


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "demo", help="run the example swing-up controller as a job on the local platform and print the results"
    )
    parser.add_argument("--output", type=Path, default=None, help="results folder (default: results/<time>-swingup)")
    parser.add_argument("--robots", type=int, default=3, help="simulated robots to start")
    parser.add_argument(
        "--isolation",
        choices=[isolation.value for isolation in Isolation],
        default=Isolation.PROCESS.value,
        help="run the controller as a limited subprocess (default) or in a podman container",
    )
    parser.set_defaults(handler=run)


def run(arguments: argparse.Namespace) -> int:
    output: Path = arguments.output or Path("results") / f"{time.strftime('%Y%m%d-%H%M%S')}-swingup"
    output.mkdir(parents=True, exist_ok=True)
    print(f"RaaS demo: local platform with {arguments.robots} simulated robots (real agents, real time)")
    config = PlatformConfig(
        data_dir=(output / "platform").resolve(), robots=arguments.robots, isolation=Isolation(arguments.isolation)
    )
    with LocalPlatform(config) as platform:
        spec = JobSpec(owner="demo", source=LocalSource(path=str(example_controller().parent)))
        record = platform.submit(spec)
        print(f"  submitted {record.job_id}: {spec.entrypoint} of {Path(spec.source.path).name}")  # type: ignore[union-attr]
        record = _follow(platform, record.job_id)
        status = record.status
        print(f"  {status.phase.value}: {status.message or status.reason}")
        for result in ResultFile:
            key = result_key(record.job_id, result)
            if platform.results.exists(key):
                (output / result.value).write_bytes(platform.results.get_bytes(key))
    summary = status.summary
    if summary is not None:
        swing = summary.swing_up_time_s
        print(f"  robot:          {status.robot}")
        print(f"  steps:          {summary.steps}")
        print(f"  total reward:   {summary.total_reward:.1f}" if summary.total_reward is not None else "")
        print(f"  swung up at:    {f'{swing:.2f} s' if swing is not None else 'never'}")
        if summary.sim_to_real_rmse_rad is not None:
            print(f"  sim-to-real:    {summary.sim_to_real_rmse_rad:.4f} rad RMSE against the robot's simulator")
    for result in (
        ResultFile.PLOT,
        ResultFile.ANIMATION,
        ResultFile.TRAJECTORY,
        ResultFile.STDOUT,
        ResultFile.METADATA,
    ):
        print(f"  {result.value + ':':<20}{output / result.value}")
    (output / "summary.json").write_text(json.dumps(summary.model_dump() if summary else {}, indent=2) + "\n")
    return 0 if status.phase is Phase.SUCCEEDED else 1


def _follow(platform: LocalPlatform, job_id: str) -> Any:
    shown = ""
    while True:
        record = platform.get(job_id)
        status = record.status
        if status.phase.is_terminal:
            return record
        line = status.phase.value
        if status.phase is Phase.QUEUED and status.queue_position is not None:
            line += f" (position {status.queue_position})"
        if status.phase is Phase.RUNNING:
            steps = platform.steps_run(record)
            line += f" on {status.robot}: {steps or 0} steps" if steps is not None else f" on {status.robot}"
        if line != shown:
            print(f"  {line}", flush=True)
            shown = line
        time.sleep(0.25 if status.phase is not Phase.RUNNING else 1.0)
