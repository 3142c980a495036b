"""Training tasks: what the one loop trains and on what (`base.Task`). `detection` is the two-class detector;
a new task is one file here plus one line in spoofrl.training.registry.TASKS."""
from spoofrl.training.tasks.base import Task

__all__ = ["Task"]
