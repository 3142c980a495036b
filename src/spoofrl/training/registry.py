"""Name -> objective class (lazy "module:attr" entries, so the training config can check a name without
importing the objectives). A new objective is one file in spoofrl/training/objectives/ plus one line here."""
from spoofrl.registry import Registry

OBJECTIVES = Registry("objective", {
    "sft": "spoofrl.training.objectives.sft:SFTObjective",
    "grpo": "spoofrl.training.objectives.grpo:GRPOObjective",
})
