"""Name -> objective class and name -> task class (lazy "module:attr" entries, so the training config can check
a name without importing them). A new objective is one file in spoofrl/training/objectives/ plus one line
here; a new task one file in spoofrl/training/tasks/ plus one line."""
from spoofrl.registry import Registry

OBJECTIVES = Registry("objective", {
    "sft": "spoofrl.training.objectives.sft:SFTObjective",
    "grpo": "spoofrl.training.objectives.grpo:GRPOObjective",
})

TASKS = Registry("task", {
    "detection": "spoofrl.training.tasks.detection:DetectionTask",
})
