"""Azure ML sweeps: search spaces and their sampling algorithms, and the early termination policies."""
