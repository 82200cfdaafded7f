"""Solvers of the discrete equation ``dp/dt = A p``: sparse linear algebra (LU back ends, GTH), the steady state
``A p = 0``, time evolution, mean first-passage times and escape rates, and resumable checkpoints."""
