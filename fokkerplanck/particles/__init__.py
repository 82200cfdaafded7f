"""Monte Carlo particles: the Ito SDE (Euler-Maruyama), the discrete random-shift minibatch SGD and Langevin
dynamics, numba-parallel and reproducible by seed (:func:`simulate`), histogrammed onto a grid."""

from .simulator import Ensemble, pack_landscape, pack_noise, simulate, step_count

__all__ = ["simulate", "Ensemble", "step_count", "pack_landscape", "pack_noise"]
