"""fokkerplanck: Fokker-Planck equations of SGD-like dynamics on grids, checked against particles and theory.

    dP/dt = sum_i d_i [ -v_i P + sum_j d_j (D_ij P) ]      (Ito; v = -grad L, noise covariance 2 D)

Data flow: grid, landscapes, noise -> problem -> kernels -> operator -> density -> linalg -> steady, evolve
-> particles, theory, compare -> io, plot, config -> cli.
"""
from . import landscapes, noise
from .grid import Frame, Grid
from .problem import Problem
from .density import Density, Trajectory
from .operator import Generator, generator
from . import linalg
from .linalg import set_lu_backend
from .steady import steady_state
from .evolve import evolve
from . import theory, adiabatic
from .compare import compare
from .passage import mean_first_passage_time, escape_rate
from .landscapes import HighDimValley, MultiValley
from .particles import simulate, Ensemble
from . import io, plot, config
from .io import load
import sys as _sys
from .sweep import sweep, SweepResult
from . import flatness
sweeps = _sys.modules[__name__ + ".sweep"]   # the module; fp.sweep is the function

__version__ = "0.1.0"
