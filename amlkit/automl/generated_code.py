"""Where Azure's AutoML puts the training code it generates for a model, in the best run's artifacts."""

FOLDER = "generated_code"
SCRIPT_FILE = "script.py"
ENVIRONMENT_FILE = "conda_env.yml"
