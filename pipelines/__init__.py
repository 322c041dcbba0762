"""Ray pipelines."""
