"""Azure ML's rules and analytics, true whichever workspace runs the job: on Azure and on localml.

Asset references and ``azureml://`` URIs, content hashing, command placeholders, the MLTable reader,
metric names and definitions, sweep search spaces, sampling and early termination, AutoML settings and
data checks, the Responsible AI insights, scorecard and dashboard, and pictures. ``tasks/`` use it to
check specs and analyse results before and after a job, whatever the workspace; ``localml/`` uses it to
run jobs as Azure does. It imports neither of them, nor Prefect.
"""
