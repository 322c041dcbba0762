"""Task plugins: each turns its data into batches, builds its model and scores it.

Installed plugins are found through the ``gfssm.tasks`` entry point (see :mod:`.base`).
"""

from gfssm.tasks.base import (
    ENTRY_POINT_GROUP,
    Batch,
    StepOutput,
    Task,
    TaskSettings,
    available_tasks,
    get_task,
    move_batch,
)
from gfssm.tasks.jobs import (
    BatchJob,
    PredictorSpec,
    TaskCommand,
    TaskInputError,
    WorkItem,
    existing_file,
    resolve_path,
    run_job_inline,
)
from gfssm.tasks.pretrained import LoadedModel, load_model, save_model

__all__ = [
    "ENTRY_POINT_GROUP",
    "Batch",
    "BatchJob",
    "LoadedModel",
    "PredictorSpec",
    "StepOutput",
    "Task",
    "TaskCommand",
    "TaskInputError",
    "TaskSettings",
    "WorkItem",
    "available_tasks",
    "existing_file",
    "get_task",
    "load_model",
    "move_batch",
    "resolve_path",
    "run_job_inline",
    "save_model",
]
