"""Azure's AutoML rules: settings, limits and algorithms checked, data guardrails and featurization."""
