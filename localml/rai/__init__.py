"""Responsible AI components on localml: the programs behind Azure's built-in RAI components (``steps.py``)."""
