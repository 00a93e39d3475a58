"""The virtual rig: a pigpiod-compatible server backed by the gym_raas physics.

Run it with ``python -m raas_node.virtual_rig --port 8888``, or in-process with
``VirtualRig().start()``; the real `pigpio` client and the `pigpio` driver talk to it unchanged.
"""

from raas_node.virtual_rig.cli import main
from raas_node.virtual_rig.pendulum import EncoderEdge, PendulumState, RealTimePendulum
from raas_node.virtual_rig.server import RigState, VirtualRig

__all__ = ["EncoderEdge", "PendulumState", "RealTimePendulum", "RigState", "VirtualRig", "main"]
