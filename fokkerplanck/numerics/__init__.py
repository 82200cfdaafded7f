"""The discretisation: the finite-volume generator ``A`` of a problem (``dp/dt = A p``) and its numba kernels.
``A`` is a monotone M-matrix (Selling's decomposition of ``D``, Scharfetter-Gummel fluxes), so mass is
conserved to round-off and densities stay non-negative."""
