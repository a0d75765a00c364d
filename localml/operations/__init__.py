"""The operation groups of a LocalMLClient, one module per Azure ML area."""
