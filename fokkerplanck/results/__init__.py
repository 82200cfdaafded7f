"""Results: saving and loading densities and trajectories (NumPy, NetCDF) and the distances between two
densities (L1, KL, moments) used to compare solver, particles and theory."""
