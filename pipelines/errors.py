"""Errors the command line reports as one clear message (no traceback).

Kept free of Ray and MLflow imports so that the CLI can name them without loading either.
"""

from __future__ import annotations


class GFSSMUserError(Exception):
    """Base: bad input or an unusable environment; the message says what to do."""


class ExperimentError(GFSSMUserError, ValueError):
    """An experiment file or override is invalid; the message lists what is valid."""


class TrackingError(GFSSMUserError, RuntimeError):
    """The MLflow tracking store cannot be used."""


class RayConnectionError(GFSSMUserError, ConnectionError):
    """The Ray cluster cannot be reached."""


class TrainingError(GFSSMUserError, RuntimeError):
    """Training could not finish (the MLflow run is marked FAILED)."""


class SubmitError(GFSSMUserError, RuntimeError):
    """A job could not be built or submitted."""


class ModelNotFound(GFSSMUserError, FileNotFoundError):
    """``--model`` does not lead to a model directory."""


class RunNotFound(GFSSMUserError, LookupError):
    """No MLflow run or experiment matches."""
