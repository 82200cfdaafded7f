"""fokkerplanck: Fokker-Planck equations of SGD-like dynamics on grids, with particles and theory."""
from . import landscapes, noise
from .grid import Grid
from .problem import Problem
from .density import Density, Trajectory
from .operator import Generator, generator

__version__ = "0.1.0"
from .steady import steady_state
