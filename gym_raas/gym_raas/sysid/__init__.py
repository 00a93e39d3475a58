"""System identification: fit a rig's physics parameters to recorded trajectories.

Typical use (the robot agent's calibration routine does exactly this on the robot)::

    from gym_raas import sysid

    trajectories = [record(experiment) for experiment in sysid.standard_experiments()]
    result = sysid.fit_params(trajectories)
    worst = max(result.per_trajectory, key=lambda fit: fit.rmse_rad)  # label, rmse_rad, ...
    sysid.write_calibration(result, "pendulum-07.json", robot="pendulum-07")
    env = gym.make("RaasPendulum-v0", calibration="pendulum-07.json")

Data (`RecordedTrajectory`): sample times, the encoder angle from upright and the command the
motor received from each sample until the next. Real data are messy, and the fit expects it:
angles quantised to the encoder's counts, irregular sample times with clock jitter, wrapped
angles, an unknown speed at the first sample, the odd glitch.

What is identified (`DEFAULT_FIT_FIELDS`), per unit of pendulum inertia as in `PendulumParams`:
ω₀ (``natural_frequency_rad_per_s``), the total linear damping, Coulomb friction, the motor's
stall acceleration and its deadband.

* Identifiability. Viscous and back-EMF damping both act ∝ θ̇; with angle and command alone
  only their sum is observable. The fit treats the sum as one unknown
  (``linear_damping_per_s``) and splits the result in the proportion of the starting
  parameters (the reference rig: 0.2 viscous to 0.45 back-EMF). Either part may instead be
  fitted alone while the other is held; fitting two of the three is refused.
* Held, not fitted: structural parameters (encoder counts, PWM steps, control period, command
  range, velocity limit) and the actuation latency. A calibration recording stamps each
  command when the motor gets it, so it holds no trace of the agent's one-period latency,
  which the environment models; the driver's own delay (≈ 2 ms) is below what 30–70 ms samples
  resolve.
* Nuisance unknowns, per recording: the speed and the angle at the first sample (the angle
  starts at the measured one: it differs by the quantisation, or more if that read is a glitch).

Method (`fit_params`): simulation-error minimisation. The model is driven by the recorded
commands (zero-order hold) and integrated between the recorded sample times with steps of at
most 5 ms, each interval split evenly, so irregular timestamps need no resampling (see
`gym_raas.sysid.model`: leapfrog with exact linear damping, the simulator's PWM quantisation,
deadband and friction rule). The residual is model angle minus measured angle at every sample;
`scipy.optimize.least_squares` (trust-region reflective, bounded, unknowns scaled to order one,
finite-difference Jacobian) minimises a soft-L1 loss with its knee at two encoder counts, so
glitched reads lose their pull. Two stages make it robust to a poor start and to bad stretches:

1. Multiple shooting: every recording is cut into pieces of about one swing (1.5 s), each with
   its own start angle and speed. Errors cannot pile up over many swings, so a start with ω₀
   20 % off still converges.
2. Single shooting from that estimate: each recording is one run from one start state (the
   final estimate). Where the model cannot follow a whole recording from one state (motion
   near upright is chaotic; a bump; a gap that makes the unwrapped angle ambiguous) it is
   fitted in the longest runs it can follow, and a piece it cannot follow even alone is left
   out; `TrajectoryFit.pieces` and ``excluded_samples`` report both.

All pieces and all finite-difference variants of the Jacobian are simulated as one numpy
batch, so an evaluation costs one Python loop over time: fitting the standard experiments (47 s
of data at 30–70 ms) takes about a second and a half on one core.

Quality (`FitResult`): the RMS and largest angle error of every recording, and overall. On a
healthy fit they are those of the encoder's quantisation (about 0.3 and 1 count; a count is
0.013 rad); a recording far above the others points to a bad recording or an unmodelled effect.

Accuracy on simulated recordings of the standard experiments (480 counts, 30–70 ms samples with
0.5 ms clock jitter, random rigs around the reference): ω₀ and stall acceleration within 0.3 %,
the damping sum within 1 %, the deadband within 3 %. Coulomb friction is the faintest effect
and the least certain: about 2.5 % (one standard deviation), mostly from the clock jitter.

`standard_experiments` lists the experiments a robot runs to calibrate (free swings and command
steps), and `simulate_experiment` produces their recordings from known parameters on
`PendulumSimulator`, which the tests use to check that the fit finds those parameters again.
"""

from gym_raas.sysid.experiments import Experiment, simulate_experiment, standard_experiments
from gym_raas.sysid.fields import DEFAULT_FIT_FIELDS, FITTABLE, LINEAR_DAMPING
from gym_raas.sysid.fit import FitResult, TrajectoryFit, fit_params, write_calibration
from gym_raas.sysid.model import predict
from gym_raas.sysid.recording import RecordedTrajectory

__all__ = [
    "DEFAULT_FIT_FIELDS",
    "FITTABLE",
    "LINEAR_DAMPING",
    "Experiment",
    "FitResult",
    "RecordedTrajectory",
    "TrajectoryFit",
    "fit_params",
    "predict",
    "simulate_experiment",
    "standard_experiments",
    "write_calibration",
]
