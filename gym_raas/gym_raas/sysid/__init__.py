"""System identification: fit a rig's physics parameters to recorded trajectories.

Typical use (the robot agent's calibration routine does exactly this on the robot)::

    from gym_raas import sysid

    trajectories = [record(experiment) for experiment in sysid.standard_experiments()]
    result = sysid.fit_params(trajectories)
    sysid.write_calibration(result, "pendulum-07.json", robot="pendulum-07")
    env = gym.make("RaasPendulum-v0", calibration="pendulum-07.json")

What is identified: ω₀, the linear damping (viscous + back-EMF, as one sum: they are not
separable from angle data), Coulomb friction, the motor's stall acceleration and its deadband.
Per trajectory, the initial speed and a small initial-angle offset are unknowns of the fit too.
Structural parameters (encoder counts, PWM steps, control period, command range) are given.
The data may be messy: encoder-quantised angles, irregular sample times (each interval is
integrated with its own step), unknown initial speed; a robust loss (soft-L1) limits the pull
of outliers.
"""

from gym_raas.sysid.experiments import Experiment, simulate_experiment, standard_experiments
from gym_raas.sysid.fit import DEFAULT_FIT_FIELDS, FitResult, TrajectoryFit, fit_params, write_calibration
from gym_raas.sysid.model import RecordedTrajectory

__all__ = [
    "DEFAULT_FIT_FIELDS",
    "Experiment",
    "FitResult",
    "RecordedTrajectory",
    "TrajectoryFit",
    "fit_params",
    "simulate_experiment",
    "standard_experiments",
    "write_calibration",
]
