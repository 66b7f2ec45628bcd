"""The shared plumbing: configs, runs, checkpoints, distributed helpers, recipes and reports."""
from .config import ConfigError, apply_overrides
from .dist import all_reduce_mean, seed_everything
from .recipes import REGISTRY, Recipe, Target, execute, recipe
from .run import NonFiniteLoss, Run

__all__ = ["ConfigError", "apply_overrides", "all_reduce_mean", "seed_everything", "REGISTRY", "Recipe",
           "Target", "execute", "recipe", "NonFiniteLoss", "Run"]
