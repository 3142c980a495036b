"""Name -> objective class and name -> task class (lazy "module:attr" entries, so the training config can check
a name without importing them). A new objective is one file in spoofrl/training/objectives/ plus one line
here (GENERATION_OBJECTIVES for the generation task's version); a new task one file in spoofrl/training/tasks/
plus one line."""
from spoofrl.registry import Registry

OBJECTIVES = Registry("objective", {
    "sft": "spoofrl.training.objectives.sft:SFTObjective",
    "grpo": "spoofrl.training.objectives.grpo:GRPOObjective",
})

# the generation task's implementations of the same objectives (same names and options; docs/training.md)
GENERATION_OBJECTIVES = Registry("generation objective", {
    "sft": "spoofrl.training.objectives.generative_sft:GenerativeSFT",
    "grpo": "spoofrl.training.objectives.generative_grpo:GenerativeGRPO",
})

TASKS = Registry("task", {
    "detection": "spoofrl.training.tasks.detection:DetectionTask",
    "generation": "spoofrl.training.tasks.generation:GenerationTask",
})
