"""Scale: parameter sweeps over many problems, cached and resumable, serially or on a Dask cluster. Knows no
model; the science modules register their point functions here."""
