"""fokkerplanck: Fokker-Planck equations of SGD-like dynamics on grids, checked against particles and theory.

    dP/dt = sum_i d_i [ -v_i P + sum_j d_j (D_ij P) ]      (Ito; v = -grad L, noise covariance 2 D)

The subpackages follow the data flow, and each imports only from those before it:

    model      grid, frame, landscapes, noise, problem, densities     what the user describes
    numerics   kernels (numba), operator                             the finite-volume generator A
    solvers    linalg, steady, evolve, passage, checkpoint           dp/dt = A p, A p = 0, first passage
    particles  simulate, kernels (numba)                             Monte Carlo SDE / SGD / Langevin
    results    io, compare                                           saved results and distances
    scale      sweep                                                 many problems, locally or on Dask
    sgd        theory, adiabatic, flatness, phase_diagrams           the science of flat minima
    interface  cli, config, plot                                     the front door
"""

from . import _compat
from .interface import config, plot
from .model import landscapes, noise
from .model.density import Density, Trajectory
from .model.grid import Frame, Grid
from .model.landscapes import HighDimValley, MultiValley
from .model.problem import Problem
from .numerics.operator import Generator, generator
from .particles import Ensemble, simulate
from .results import io
from .results.compare import compare
from .results.io import load
from .scale.sweep import SweepResult, sweep
from .sgd import adiabatic, alignment, flatness, freezing, label_noise, phase_diagrams, theory
from .solvers import linalg
from .solvers.evolve import evolve
from .solvers.linalg import set_lu_backend
from .solvers.passage import escape_rate, first_passage_probability, mean_first_passage_time
from .solvers.steady import steady_state

sweeps = _compat.install(__name__)  # the 0.1 module fokkerplanck.sweep; fp.sweep is the function

from ._version import __version__


def __getattr__(name):
    module = _compat.old_module(__name__, name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return module
