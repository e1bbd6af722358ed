"""Training SeViLA's three stages with one loop: `sevila train CONFIG.yaml [key=value ...]`.

    from sevila.train import load_config, train
    result = train(load_config("configs/nextqa/finetune-answerer.yaml", ["output_dir=runs/ft", "epochs=1"]))
    model = SeViLA.from_pretrained(result.best_dir)

Modules: `config` (the typed run config), `recipes` (one per stage: branch, loss, metric), `data` (batch order
and seeded augmentation), `optim` (parameter groups, schedule), `loop` (the loop itself), `checkpointing`
(resumable checkpoints, best model) and `logs` (metrics.jsonl, TensorBoard).
"""

from sevila.train.config import STAGES, ConfigError, DataConfig, OptimConfig, TrainConfig, load_config
from sevila.train.loop import StageResult, TrainResult, train
from sevila.train.recipes import RECIPES, Recipe, StageModel, build_recipe

__all__ = [
    "RECIPES",
    "STAGES",
    "ConfigError",
    "DataConfig",
    "OptimConfig",
    "Recipe",
    "StageModel",
    "StageResult",
    "TrainConfig",
    "TrainResult",
    "build_recipe",
    "load_config",
    "train",
]
