"""Prefect flows of the model lifecycle."""
