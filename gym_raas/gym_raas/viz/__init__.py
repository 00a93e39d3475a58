"""Pictures of a run: a four-panel plot (PNG) and an animation of the pendulum (GIF)."""

from gym_raas.viz.animation import animate_trajectory
from gym_raas.viz.plot import plot_trajectory

__all__ = ["animate_trajectory", "plot_trajectory"]
