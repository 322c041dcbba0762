"""Built-in pyfunc predictors (filled in per task)."""
