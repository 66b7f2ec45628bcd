"""The recipe registry and the function that runs one recipe end to end.

A recipe is registered with :func:`recipe`::

    @recipe("ptb-lstm-small", lecture=6, section="Recurrent architectures", config=LMConfig,
            datasets=("ptb",), presets={"quick": {...}},
            target=Target("test_ppl", "<=", 120, "Zaremba et al. 2014, small: 114.5"))
    def ptb_lstm_small(cfg: LMConfig, run: Run) -> dict[str, float]: ...

The config dataclass's defaults are the ``full`` budget; ``presets`` holds dotted overrides.
:func:`execute` builds the config, makes the run directory, seeds, calls the recipe, and writes
``result.json`` (final metrics, ``wall_s``, ``peak_rss_mb`` and the target with ``met``) and a
learning-curve figure.
"""
from __future__ import annotations

import dataclasses
import json
import operator
import os
import time
from pathlib import Path
from typing import Any, Callable

from . import config as C
from . import dist as D
from .run import Run, atomic_write_text, peak_rss_mb

# Packages whose modules register recipes with @recipe; load_all() imports every module in them.
RECIPE_PACKAGES = ["dlnotes.sequence", "dlnotes.rl", "dlnotes.generative", "dlnotes.fewshot", "dlnotes.selfsup"]

_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


@dataclasses.dataclass
class Target:
    metric: str
    op: str
    value: float
    source: str

    def met(self, result: dict) -> bool | None:
        v = result.get(self.metric)
        if v is None:
            return None
        return bool(_OPS[self.op](float(v), self.value))

    def as_dict(self, result: dict | None = None) -> dict:
        d = dataclasses.asdict(self)
        if result is not None:
            d["met"] = self.met(result)
        return d

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclasses.dataclass
class Recipe:
    name: str
    fn: Callable
    config: type
    lecture: int
    section: str
    datasets: tuple = ()
    target: Target | None = None
    presets: dict = dataclasses.field(default_factory=dict)  # name -> overrides; "full" applies to all
    summary: str = ""

    def make_config(self, preset: str = "full", overrides=()):
        cfg = self.config()
        if preset not in ("full", *self.presets):
            raise C.ConfigError(f"recipe {self.name!r} has no preset {preset!r}; presets: full, "
                                + ", ".join(p for p in self.presets if p != "full"))
        C.apply_overrides(cfg, dict(self.presets.get("full", {})))  # "full" holds the recipe's own settings
        if preset != "full":
            C.apply_overrides(cfg, dict(self.presets[preset]))
        C.apply_overrides(cfg, list(overrides))
        if hasattr(cfg, "check"):  # a config may reject values its types allow, before any run is made
            cfg.check()
        return cfg


REGISTRY: dict[str, Recipe] = {}


def recipe(name: str, *, lecture: int, section: str, config: type, datasets=(), target: Target | None = None,
           presets: dict | None = None):
    def deco(fn):
        REGISTRY[name] = Recipe(name=name, fn=fn, config=config, lecture=lecture, section=section,
                                datasets=tuple(datasets), target=target, presets=presets or {},
                                summary=(fn.__doc__ or "").strip().split("\n")[0])
        return fn
    return deco


def load_all() -> dict[str, Recipe]:
    import importlib.util
    import pkgutil

    for pkg_name in RECIPE_PACKAGES:
        if importlib.util.find_spec(pkg_name) is None:
            continue
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=pkg_name + "."):
            importlib.import_module(info.name)
    return REGISTRY


class UnknownRecipe(KeyError):
    pass


def get(name: str) -> Recipe:
    load_all()
    if name not in REGISTRY:
        raise UnknownRecipe(f"unknown recipe {name!r}; `dlnotes list` shows them. Known: "
                            + ", ".join(sorted(REGISTRY)))
    return REGISTRY[name]


def _new_run_dir(root: Path, name: str) -> Path:
    """Create and return ``root/name/<time>`` (``<time>-1``, ``-2``, ... when taken). The directory
    is claimed by ``mkdir`` itself, so two runs started in the same second never share one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (root / name).mkdir(parents=True, exist_ok=True)
    i = 0
    while True:
        path = root / name / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            i += 1


def _shared_dir(root: Path, name: str) -> Path:
    """Rank 0 picks the directory; the other ranks receive it."""
    rank, world, _ = D.init_distributed()
    if world == 1:
        return _new_run_dir(root, name)
    import torch.distributed as dist
    box = [str(_new_run_dir(root, name)) if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def execute(name: str | None = None, *, preset: str = "full", overrides=(), seed: int = 0,
            resume: str | Path | None = None, runs_root: str | Path = "runs", device: str = "auto",
            amp: str = "none", compile: bool = False, ckpt_every: int | None = None,
            quiet: bool | None = None, max_minutes: float = 0.0) -> tuple[Path, dict[str, Any]]:
    """Run a recipe (or resume ``resume``) and return ``(run_dir, result)``.

    ``max_minutes`` (> 0) caps this invocation's training: the step loop checkpoints and ends once the
    budget is spent, and the recipe finishes as usual (final evaluation, result.json), recording the
    step it stopped at as ``stopped_at_step``.
    """
    if max_minutes < 0:
        raise C.ConfigError(f"--max-minutes must be a positive number of minutes, or 0 for no limit "
                            f"(got {max_minutes})")
    if resume is not None:
        run_dir = Path(resume)
        cfg_path = run_dir / "config.json"
        if not cfg_path.exists():
            raise FileNotFoundError(f"{cfg_path} not found: --resume needs a run directory written by "
                                    f"`dlnotes run` (runs/<recipe>/<time>/)")
        saved = json.loads(cfg_path.read_text())
        rec = get(saved["recipe"])
        cfg = C.from_dict(rec.config, saved["config"])
        C.apply_overrides(cfg, list(overrides))
        preset, seed = saved["preset"], saved["seed"]
        opts = saved.get("run", {})
        device, amp, compile = opts.get("device", device), opts.get("amp", amp), opts.get("compile", compile)
        ckpt_every = opts.get("ckpt_every", ckpt_every)
    else:
        rec = get(name)
        cfg = rec.make_config(preset, overrides)
        run_dir = _shared_dir(Path(runs_root), rec.name)
    if ckpt_every is None:
        ckpt_every = int(getattr(cfg, "ckpt_every", 0) or 0)
    D.seed_everything(seed)
    run = Run(run_dir, device=device, amp=amp, compile=compile, ckpt_every=ckpt_every,
              resume=resume is not None, quiet=quiet, meta={"recipe": rec.name}, max_minutes=max_minutes,
              seed=seed)
    if run.is_main and resume is None:
        atomic_write_text(run_dir / "config.json", json.dumps({
            "recipe": rec.name, "preset": preset, "seed": seed, "config": C.to_dict(cfg),
            "run": {"device": device, "amp": amp, "compile": compile, "ckpt_every": ckpt_every,
                    "world_size": run.world_size},
        }, indent=2))
    t0 = time.time()
    prior_wall = 0.0
    if resume is not None and (run_dir / "partial_wall.json").exists():
        prior_wall = json.loads((run_dir / "partial_wall.json").read_text())["wall_s"]
    try:
        metrics = rec.fn(cfg, run) or {}
    except BaseException:
        if run.is_main:
            atomic_write_text(run_dir / "partial_wall.json",
                              json.dumps({"wall_s": prior_wall + time.time() - t0}))
        run.close()
        raise
    result = {k: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
              for k, v in metrics.items()}
    if run.stopped_early_at is not None:
        result["stopped_at_step"] = run.stopped_early_at
        if run.is_main:  # a later --resume adds this invocation's time to its own
            atomic_write_text(run_dir / "partial_wall.json",
                              json.dumps({"wall_s": prior_wall + time.time() - t0}))
    result["wall_s"] = round(prior_wall + time.time() - t0, 2)
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    if rec.target is not None:
        result["target"] = rec.target.as_dict(result)
    if run.is_main:
        atomic_write_text(run_dir / "result.json", json.dumps(result, indent=2))
        from .plots import plot_metrics
        plot_metrics(run)
    run.close()
    return run_dir, result


def command_for(rec: Recipe, preset: str) -> str:
    return f"dlnotes run {rec.name}" + (" --quick" if preset == "quick" else "")


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
