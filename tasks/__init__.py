"""Prefect tasks: one module per Azure ML area."""
