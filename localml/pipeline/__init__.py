"""Azure ML pipeline jobs on localml: command components run as child jobs in dependency order."""
