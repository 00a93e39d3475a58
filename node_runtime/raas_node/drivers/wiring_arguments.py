"""Command-line flags for a rig's wiring (`RigWiring`), shared by ``raas-agent`` and the virtual rig.

``--bridge-mode``, ``--forward-pwm-pin``, ``--backward-pwm-pin``, ``--pwm-pin``, ``--direction-pin``,
``--direction-complement-pin`` (-1: the board derives IN2), ``--encoder-a-pin``, ``--encoder-b-pin``;
each defaults to the reference wiring (docs/wiring.md).
"""

from __future__ import annotations

import argparse

from raas_node.drivers.config import BridgeMode, RigWiring

_PIN_FIELDS = ("forward_pwm_pin", "backward_pwm_pin", "pwm_pin", "direction_pin", "encoder_a_pin", "encoder_b_pin")


def add_wiring_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the wiring flags to `parser`."""
    defaults = RigWiring()
    parser.add_argument(
        "--bridge-mode", choices=[mode.value for mode in BridgeMode], default=defaults.bridge_mode.value,
        help="how the H-bridge is driven (default %(default)s)",
    )  # fmt: skip
    for name in _PIN_FIELDS:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(flag, type=int, default=getattr(defaults, name), help="GPIO (default %(default)s)")
    parser.add_argument(
        "--direction-complement-pin",
        type=int,
        default=defaults.direction_complement_pin,
        help="GPIO of IN2 in pwm_direction mode; -1 if the board derives it (default %(default)s)",
    )


def wiring_from_arguments(arguments: argparse.Namespace) -> RigWiring:
    """The wiring the flags describe; `DriverConfigError` when it is impossible (e.g. a pin twice)."""
    complement = None if arguments.direction_complement_pin < 0 else arguments.direction_complement_pin
    return RigWiring(
        bridge_mode=BridgeMode(arguments.bridge_mode),
        direction_complement_pin=complement,
        **{name: getattr(arguments, name) for name in _PIN_FIELDS},
    )
