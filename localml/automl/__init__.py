"""AutoML jobs on localml: Azure's classification and regression jobs, searched by FLAML."""
