"""Azure ML sweep jobs on localml: search spaces sampled with Optuna and Azure's early termination policies."""
