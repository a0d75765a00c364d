"""The amlflows command line."""
