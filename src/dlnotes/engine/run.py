"""``Run``: the one object a recipe talks to.

It owns the run directory ``runs/<recipe>/<timestamp>/`` and everything written there:

- ``config.json`` (recipe, preset, seed, config), ``metrics.jsonl`` (one JSON object per
  ``log`` call), TensorBoard events under ``tb/``, figures and texts, ``result.json``;
- checkpoints under ``checkpoints/step-<N>/``: module weights in safetensors, everything else
  (optimizer, RNG states, step, ``run.state``) in ``state.pt`` read back with
  ``weights_only=True``. A checkpoint is written to a temporary folder and renamed into place,
  then ``checkpoints/latest`` is switched atomically; the previous good one is kept.

A recipe registers what must survive a restart with :meth:`Run.watch`, calls
:meth:`Run.restore` to get the step to start from, and iterates :meth:`Run.steps`, which draws
the progress bar, checkpoints every ``ckpt_every`` steps and turns Ctrl-C into "save, then stop".
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from . import dist as D


class NonFiniteLoss(RuntimeError):
    """Raised when a logged loss is NaN or infinite; the last good checkpoint is kept."""


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    module = getattr(module, "_orig_mod", module)  # torch.compile wrapper
    return getattr(module, "module", module)  # DistributedDataParallel wrapper


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Run:
    def __init__(self, directory: Path, *, device: str = "auto", amp: str = "none", compile: bool = False,
                 ckpt_every: int = 0, resume: bool = False, quiet: bool | None = None, meta: dict | None = None,
                 max_minutes: float = 0.0, seed: int = 0):
        self.rank, self.world_size, self.local_rank = D.init_distributed()
        self.seed = seed  # the run's --seed (recipes derive their data-order streams from it)
        # wall-clock budget of this invocation: ``steps`` ends early (checkpoint first) once it is spent
        self.max_minutes = max_minutes
        self.stopped_early_at: int | None = None
        self.dir = Path(directory)
        self.device = D.pick_device(device, self.local_rank)
        self.amp = amp
        if amp == "bf16" and not D.bf16_supported(self.device) and self.rank == 0:
            print(f"[dlnotes] --amp bf16: {self.device.type} has no native bf16 (CPUs need AVX-512 BF16 or AMX, "
                  f"GPUs Ampere or newer); running in fp32, as emulated bf16 would be slower", file=sys.stderr)
        self.compile_enabled = compile
        self.ckpt_every = ckpt_every
        self.resumed = resume
        self.state: dict[str, Any] = {}
        self.step = 0
        self.meta = meta or {}
        self._watched: dict[str, Any] = {}
        self._last_metrics: dict[str, float] = {}
        self._interrupted = False
        self._bar = None
        self._last_plain = 0.0
        self._t0 = time.time()
        if quiet is None:
            quiet = not sys.stderr.isatty() or os.environ.get("DLNOTES_QUIET") == "1"
        self.quiet = quiet
        self._tb = None
        if self.is_main:
            (self.dir / "checkpoints").mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(str(self.dir / "tb"))
            except Exception as e:  # tensorboard missing: keep going with JSONL only
                print(f"[dlnotes] TensorBoard disabled: {e}", file=sys.stderr)
        D.barrier()

    # ------------------------------------------------------------------ basics
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def autocast(self):
        """bf16 autocast when ``--amp bf16`` was asked for and the device supports it."""
        if self.amp == "bf16" and D.bf16_supported(self.device):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def place(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device (in place, returned). Under bf16 autocast, a model with 2-D
        convolutions also gets channels-last weights: oneDNN (CPUs with AMX / AVX-512 BF16) and cuDNN
        then run its convolutions in their fast NHWC kernels (about 2-3.5x per step on this CPU for
        the few-shot and SimCLR backbones; ``benchmarks/lecture13_throughput.py --amp bf16``)."""
        model.to(self.device)
        if (self.amp == "bf16" and D.bf16_supported(self.device)
                and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())):
            model.to(memory_format=torch.channels_last)
        return model

    def prepare(self, model: torch.nn.Module, **ddp_kwargs) -> torch.nn.Module:
        """Move to the device (see :meth:`place`), wrap in DDP when distributed, compile when asked."""
        model = self.place(model)
        if self.world_size > 1:
            ids = [self.local_rank] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, **ddp_kwargs)
        if self.compile_enabled:
            model = torch.compile(model)
        return model

    # ------------------------------------------------------------------ logging
    def log(self, step: int, **metrics: float) -> None:
        """Record metrics at ``step``; a non-finite ``*loss*`` value stops the run."""
        clean = self.log_check(step, **metrics)
        self._last_metrics.update(clean)
        if not self.is_main:
            return
        with open(self.dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, "time": round(time.time() - self._t0, 3), **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                self._tb.add_scalar(k, v, step)
        if self._bar is not None:
            self._bar.set_postfix({k: f"{v:.4g}" for k, v in self._last_metrics.items()}, refresh=False)
        elif not self.quiet and time.time() - self._last_plain > 30:
            self._last_plain = time.time()
            body = " ".join(f"{k}={v:.4g}" for k, v in clean.items())
            print(f"[{self.meta.get('recipe', 'run')}] step {step} {body}", file=sys.stderr, flush=True)

    def log_check(self, step: int, **metrics: float) -> dict[str, float]:
        """Check ``*loss*`` values are finite without recording them (for steps not logged)."""
        clean = {}
        for k, v in metrics.items():
            v = float(v.item() if isinstance(v, torch.Tensor) else v)
            if "loss" in k and not math.isfinite(v):
                raise NonFiniteLoss(
                    f"non-finite {k}={v} at step {step}; stopped. The last good checkpoint is kept in "
                    f"{self.dir / 'checkpoints'} (resume with: dlnotes run --resume {self.dir})")
            clean[k] = v
        return clean

    def print(self, *args) -> None:
        if self.is_main and not os.environ.get("DLNOTES_SILENT"):
            msg = " ".join(str(a) for a in args)
            if self._bar is not None:
                self._bar.write(msg, file=sys.stderr)
            else:
                print(msg, file=sys.stderr, flush=True)

    def save_figure(self, name: str, fig) -> Path | None:
        if not self.is_main:
            return None
        import matplotlib.pyplot as plt
        path = self.dir / (name if name.endswith(".png") else f"{name}.png")
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
        plt.close(fig)
        return path

    def save_text(self, name: str, text: str) -> Path | None:
        if not self.is_main:
            return None
        path = self.dir / name
        atomic_write_text(path, text)
        return path

    # ------------------------------------------------------------------ progress
    def steps(self, total: int, *, unit: str = "it", items_per_step: float = 1.0) -> Iterator[int]:
        """Yield steps ``self.step .. total-1``; checkpoint every ``ckpt_every`` and on Ctrl-C."""
        start = self.step
        if self.stopped_early_at is not None:  # a later training phase of a run whose time is up
            return
        if self.is_main and not self.quiet:
            from tqdm import tqdm
            scale = items_per_step if items_per_step != 1 else False
            self._bar = tqdm(total=total, initial=start, unit=unit, unit_scale=scale or False,
                             desc=self.meta.get("recipe", ""), dynamic_ncols=True, leave=False)
        old_handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        in_main_thread = _is_main_thread()
        # DLNOTES_STOP_AFTER=N behaves like Ctrl-C after step N (used to test resumption)
        stop_after = int(os.environ.get("DLNOTES_STOP_AFTER", "0") or 0)
        if in_main_thread:  # Ctrl-C or `kill`/timeout: finish the step, checkpoint, stop
            signal.signal(signal.SIGINT, self._on_sigint)
            signal.signal(signal.SIGTERM, self._on_sigint)
        try:
            for step in range(start, total):
                self.step = step
                yield step
                self.step = step + 1
                if self._bar is not None:
                    self._bar.update(1)
                if stop_after and self.step == stop_after:
                    self._interrupted = True
                if self.max_minutes and self.step < total and self._time_is_up():
                    self.stopped_early_at = self.step
                    self.checkpoint()
                    if self.is_main:
                        print(f"time limit of {self.max_minutes:g} min reached at step {self.step}/{total}: "
                              f"checkpoint saved; finishing the run (continue training with "
                              f"dlnotes run --resume {self.dir})", file=sys.stderr, flush=True)
                    break
                if self._interrupted:
                    self.checkpoint()
                    if self.is_main:  # always said, even when DLNOTES_SILENT hides progress messages
                        print(f"interrupted: checkpoint saved at step {self.step} in {self.dir}; "
                              f"resume with: dlnotes run --resume {self.dir}", file=sys.stderr, flush=True)
                    raise KeyboardInterrupt
                if self.ckpt_every and self.step % self.ckpt_every == 0 and self.step < total:
                    self.checkpoint()
        finally:
            if in_main_thread:
                for sig, handler in old_handlers.items():
                    signal.signal(sig, handler)
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def _time_is_up(self) -> bool:
        """True once ``max_minutes`` have passed since the Run started; every rank gets rank 0's answer."""
        up = time.time() - self._t0 >= 60.0 * self.max_minutes
        if self.world_size > 1:  # ranks must leave the loop at the same step
            flag = torch.tensor([float(up)], device=self.device if self.device.type == "cuda" else "cpu")
            torch.distributed.broadcast(flag, src=0)
            up = bool(flag.item())
        return up

    def _on_sigint(self, signum, frame):
        if self._interrupted:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self._interrupted = True

    # ------------------------------------------------------------------ checkpoints
    def watch(self, **objects) -> None:
        """Register modules, optimizers, schedulers (anything with state_dict) to checkpoint."""
        self._watched.update(objects)

    def checkpoint(self) -> Path | None:
        """Atomically write the watched objects, RNG states, ``step`` and ``run.state``."""
        D.barrier()
        if not self.is_main:
            return None
        ckdir = self.dir / "checkpoints"
        final = ckdir / f"step-{self.step:09d}"
        tmp = ckdir / f".tmp-step-{self.step:09d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors, other = {}, {}
        for name, obj in self._watched.items():
            if isinstance(obj, torch.nn.Module):
                for k, v in _unwrap(obj).state_dict().items():
                    # clone: tied weights share storage, which safetensors refuses to save twice
                    tensors[f"{name}/{k}"] = v.detach().to("cpu").clone().contiguous()
            else:
                other[name] = obj.state_dict()
        save_file(tensors, str(tmp / "weights.safetensors"))
        torch.save({"step": self.step, "state": self.state, "objects": other, "rng": D.rng_state()},
                   tmp / "state.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(ckdir / "latest", final.name)
        # keep the newest two: the one just written and the previous good one
        olds = sorted(p for p in ckdir.glob("step-*") if p.is_dir())
        for p in olds[:-2]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        pointer = self.dir / "checkpoints" / "latest"
        if not pointer.exists():
            return None
        path = self.dir / "checkpoints" / pointer.read_text().strip()
        return path if path.exists() else None

    def restore(self) -> int:
        """Load the latest checkpoint into the watched objects; return the step to start from."""
        path = self.latest_checkpoint() if self.resumed else None
        if path is None:
            self.step = 0
            return 0
        tensors = load_file(str(path / "weights.safetensors"))
        blob = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        for name, obj in self._watched.items():
            if isinstance(obj, torch.nn.Module):
                prefix = f"{name}/"
                sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
                _unwrap(obj).load_state_dict(sd)
            elif name in blob["objects"]:
                obj.load_state_dict(blob["objects"][name])
        self.state = blob["state"]
        D.set_rng_state(blob["rng"])
        self.step = int(blob["step"])
        if self.is_main:
            _truncate_metrics(self.dir / "metrics.jsonl", self.step)
        self.print(f"resumed from {path} at step {self.step}")
        return self.step

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()
            self._tb = None

    @property
    def elapsed(self) -> float:
        return time.time() - self._t0


def load_run_weights(run_dir: str | Path, name: str = "model") -> dict[str, torch.Tensor]:
    """State dict of the module watched as ``name`` in a run directory's latest checkpoint
    (what ``dlnotes sample`` and friends load)."""
    run_dir = Path(run_dir)
    pointer = run_dir / "checkpoints" / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"{run_dir} has no checkpoint yet (checkpoints/latest missing)")
    weights = load_file(str(run_dir / "checkpoints" / pointer.read_text().strip() / "weights.safetensors"))
    prefix = f"{name}/"
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after ``step`` so a resumed run's curve has no duplicates."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < step]
    atomic_write_text(path, "".join(ln + "\n" for ln in keep))


def _is_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
