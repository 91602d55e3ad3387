"""One training loop for every stage: the initial stage and each self-training round.

AdamW with Mask2Former's parameter groups (backbone lr x ``backbone_lr_mult``; no weight decay on
norm layers and embeddings), full-model grad-norm clipping, a warm-up-free step schedule, autocast on
CUDA (``train.amp_dtype``: float16 with a GradScaler, as detectron2's AMP trainer, or bfloat16), atomic
checkpoints every ``checkpoint_period`` iterations and exact resume (the GradScaler's state included).
A non-finite loss skips the iteration's update (``train.nonfinite_loss: skip``, the official AMP trainer goes on)
or stops the run with an error (``stop``).

Exact resume works because nothing random is carried between iterations: the batch of iteration
``i`` comes from ``batches.batch(i)`` and torch's generator is re-seeded from (seed, i, rank) before
each step (point sampling in the criterion, dropout). A run of 2N iterations and a run of N
iterations resumed for N more end with the same weights, bit for bit on CPU.

Under torchrun (``core.dist``) the model is wrapped in DistributedDataParallel: each of the W ranks
trains on its own ``batch_size`` clips (so one iteration sees W x batch_size clips), gradients are
averaged, the logged losses are the means over the ranks, and only rank 0 writes. A checkpoint holds
no rank-specific state, so it resumes with any number of processes: iteration i then draws the
batches of ranks 0..W'-1, and the effective batch becomes W' x batch_size from there on.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..core import dist
from ..core.config import RuntimeConfig, TrainConfig
from ..core.errors import AutoQVISError
from ..core.fileio import atomic_write_text, dumps_json
from ..core.torch_io import atomic_torch_save, safe_torch_load
from ..data.sampler import batch_loader
from . import fast_path
from .weight_ema import WeightEMA

CHECKPOINT_RE = re.compile(r"^model_(\d{7})\.pt$")
FINAL_NAME = "model_final.pt"
LOG_NAME = "log.jsonl"
# Substring of the quality predictor's parameter names (docs/CONTRACTS.md, "Model").
QUALITY_PREDICTOR_KEY = "maskiou_feature_extractor"
_TORCH_STREAM = 2  # keeps the per-iteration torch seed apart from the batch sampler's streams


class Batches(Protocol):
    """Anything that returns the list of samples of an iteration (e.g. ``BalancedBatches``)."""

    seed: int

    def batch(self, iteration: int) -> list[dict[str, Any]]: ...


# ----------------------------------------------------------------------------------- optimisation
def _is_norm(module: nn.Module) -> bool:
    # Covers BatchNorm/GroupNorm/LayerNorm and custom ones (FrozenBatchNorm2d has no parameters).
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm))


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Trainable parameters split as Mask2Former does: backbone lr x mult, no decay on norms/embeddings.

    Returns a list of AdamW groups, each with ``params``, ``lr``, ``weight_decay`` and ``lr_mult``
    (the factor over ``cfg.lr`` the schedule multiplies by). Frozen parameters are left out.
    """
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            lr_mult = cfg.backbone_lr_mult if module_name.split(".")[0] == "backbone" else 1.0
            no_decay = _is_norm(module) or isinstance(module, nn.Embedding)
            groups.setdefault((lr_mult, 0.0 if no_decay else cfg.weight_decay), []).append(param)
    return [
        {"params": params, "lr": cfg.lr * mult, "weight_decay": wd, "lr_mult": mult}
        for (mult, wd), params in groups.items()
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg)
    if not groups:
        raise AutoQVISError("train: the model has no trainable parameter (all are frozen)")
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, steps: Iterable[int], gamma: float) -> float:
    """Step schedule without warm-up: ``gamma ** (number of steps <= iteration)``."""
    return gamma ** sum(1 for s in steps if iteration >= s)


def set_lr(optimizer: torch.optim.Optimizer, cfg: TrainConfig, iteration: int) -> float:
    """Set every group's lr for ``iteration``; returns the base (non-backbone) lr."""
    base = cfg.lr * lr_factor(iteration, cfg.steps, cfg.gamma)
    for group in optimizer.param_groups:
        group["lr"] = base * group["lr_mult"]
    return base


def freeze_quality_predictor(model: nn.Module) -> int:
    """``requires_grad = False`` on the quality predictor; returns how many tensors were frozen."""
    params = [p for n, p in model.named_parameters() if QUALITY_PREDICTOR_KEY in n]
    if not params:
        raise AutoQVISError("train.freeze_quality_predictor is set but the model has no quality predictor")
    for p in params:
        p.requires_grad_(False)
    return len(params)


def amp_dtype(cfg: TrainConfig) -> torch.dtype:
    """The autocast dtype of ``train.amp_dtype``."""
    return {"float16": torch.float16, "bfloat16": torch.bfloat16}[cfg.amp_dtype]


def grad_scaler(cfg: TrainConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler when training autocasts to float16 on CUDA (fp16 gradients underflow without one); else None."""
    if cfg.amp and device.type == "cuda" and amp_dtype(cfg) == torch.float16:
        return torch.amp.GradScaler("cuda")
    return None


def iteration_seed(seed: int, iteration: int, rank: int) -> int:
    """Seed of torch's generator for one step: a pure function of (seed, iteration, rank)."""
    return int(np.random.SeedSequence([seed, iteration, _TORCH_STREAM, rank]).generate_state(1)[0])


# ------------------------------------------------------------------------------------ checkpoints
def checkpoint_path(out_dir: Path, iteration: int) -> Path:
    return out_dir / f"model_{iteration:07d}.pt"


def find_last_checkpoint(out_dir: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint in ``out_dir`` with the most completed iterations, loaded; None if there is none."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return None
    periodic = sorted(
        (int(m.group(1)), p) for p in out_dir.iterdir() if (m := CHECKPOINT_RE.match(p.name)) is not None
    )
    best: tuple[Path, dict[str, Any]] | None = None
    if periodic:
        path = periodic[-1][1]
        best = (path, _load_checkpoint(path))
    final = out_dir / FINAL_NAME
    if final.is_file():
        state = _load_checkpoint(final)
        if best is None or state["iteration"] >= best[1]["iteration"]:
            best = (final, state)
    return best


def _load_checkpoint(path: Path) -> dict[str, Any]:
    state = safe_torch_load(path)
    for key in ("model", "optimizer", "iteration"):
        if not isinstance(state, dict) or key not in state:
            raise AutoQVISError(f"{path}: not a training checkpoint (no {key!r} entry); cannot resume from it")
    return state


def _restore(model: nn.Module, optimizer, state: dict[str, Any], path: Path, scaler=None, ema=None) -> None:
    try:
        # a final checkpoint of a run with a weight average holds the average as "model", the trained weights apart
        dist.unwrap(model).load_state_dict(state.get("model_trained", state["model"]))
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("grad_scaler"):
            scaler.load_state_dict(state["grad_scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AutoQVISError(f"{path}: cannot resume, the checkpoint does not fit this model/config ({first})") from None


def _save_checkpoint(path: Path, model: nn.Module, optimizer, iteration: int, meta: dict[str, Any],
                     scaler=None, ema=None, final: bool = False) -> None:
    state = {
        "model": dist.unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": iteration,
        "round": meta.get("round", 0),
        "config": meta.get("config"),
    }
    if scaler is not None:
        state["grad_scaler"] = scaler.state_dict()
    if ema is not None:
        state["ema"] = ema.state_dict()
        if final:  # what the stage hands on is the average; the trained weights stay for a resume
            state["model_trained"], state["model"] = state["model"], state["ema"]
    atomic_torch_save(state, path)


# ------------------------------------------------------------------------------------------- logs
class _JsonlLog:
    """Append-only JSONL log; on resume the lines past the restart point are dropped (atomically)."""

    def __init__(self, path: Path, keep_until: int) -> None:
        self.path = path
        kept = []
        if keep_until > 0 and path.is_file():
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line).get("iteration", 0) <= keep_until:
                        kept.append(line)
                except json.JSONDecodeError:  # a line torn by a crash
                    continue
        atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.file = path.open("a")

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(dumps_json(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class _Window:
    """Running means of the logged values since the last log line."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        """Means per key over the iterations that logged it; ``skipped_steps`` is a count."""
        out = {k: v if k == "skipped_steps" else v / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


def _tensorboard(out_dir: Path, enabled: bool):
    if not enabled or not dist.is_main_process():
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # why: tensorboard is an optional extra
    except ImportError:
        raise AutoQVISError(
            "train.tensorboard is true but tensorboard is not installed (pip install tensorboard)"
        ) from None
    return SummaryWriter(str(out_dir / "tensorboard"))


# ------------------------------------------------------------------------------------------- DDP
class _TrainForward(nn.Module):
    """DistributedDataParallel calls ``forward``; the model's training entry point is ``forward_train``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.model.forward_train(batch)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module | None:
    """``model`` in DistributedDataParallel when there are several ranks; None in one process.

    find_unused_parameters stays off: every trainable parameter reaches the loss in every step
    (tests/test_dist.py checks it for the initial stage and for a round with its frozen predictor,
    and for batches without any target); frozen parameters are not DDP's concern.
    """
    if dist.get_world_size() == 1:
        return None
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(_TrainForward(model), device_ids=ids, find_unused_parameters=False)


def _check_same_start(start: int, out_dir: Path, desc: str) -> None:
    starts = dist.all_gather_object(start)
    if len(set(starts)) > 1:
        raise AutoQVISError(
            f"{desc}: the processes found different checkpoints in {out_dir} (iterations {starts} by rank): "
            "--out must be a folder every node sees (a shared file system)")


# ------------------------------------------------------------------------------------------- loop
def _to_device(batch: list[dict[str, Any]], device: torch.device) -> list[dict[str, Any]]:
    return [{k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in s.items()} for s in batch]


def _step(model: nn.Module, ddp: nn.Module | None, batch: list[dict[str, Any]], use_amp: bool,
          dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """Forward the batch (through DDP when there are several ranks) under ``dtype`` autocast when ``use_amp``;
    returns the weighted loss terms."""
    with fast_path.autocast(next(model.parameters()).device, use_amp, dtype):
        losses = ddp(batch) if ddp is not None else dist.unwrap(model).forward_train(batch)
    if not losses:
        raise AutoQVISError("train: the model returned no loss term")
    return {k: v.float() for k, v in losses.items()}


def train_loop(
    model: nn.Module,
    batches: Batches,
    cfg: TrainConfig,
    out_dir: str | Path,
    *,
    max_iter: int,
    resume: bool = False,
    init_state: dict[str, torch.Tensor] | None = None,
    desc: str = "train",
    val_fn: Callable[[nn.Module], dict[str, Any]] | None = None,
    checkpoint_meta: dict[str, Any] | None = None,
    progress: bool = True,
    runtime: RuntimeConfig | None = None,
) -> Path:
    """Train ``model`` for ``max_iter`` iterations on ``batches``; returns ``out_dir/model_final.pt``.

    Args:
        model: a module with ``forward_train(list[sample]) -> dict[str, Tensor]`` of weighted losses.
        batches: ``.batch(i)`` gives iteration ``i``'s list of samples; ``.seed`` seeds torch per step.
        cfg: optimiser, schedule, clipping, checkpoint/log periods, AMP, workers, freezing.
        out_dir: receives ``model_NNNNNNN.pt`` (NNNNNNN = completed iterations), ``model_final.pt``
            and ``log.jsonl``.
        max_iter: total iterations of the stage (a resumed run counts from its checkpoint).
        resume: continue from the checkpoint in ``out_dir`` with the most iterations (start fresh,
            from ``init_state``, if there is none).
        init_state: model state dict loaded before a fresh start (e.g. the initial weights of a
            self-training round).
        desc: progress-bar label and error-message prefix.
        val_fn: ``val_fn(model) -> dict`` run once at the end in eval mode; its result is logged.
        checkpoint_meta: ``round`` and ``config`` (the full config as a dict) stored in each checkpoint.
        progress: show the tqdm bar (main process only).
        runtime: the fast-path switches (``engine.fast_path``; default: all off).

    Raises:
        AutoQVISError: on a non-finite loss (naming the iteration; the last good checkpoint stays).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if max_iter < 0:
        raise AutoQVISError(f"{desc}: max_iter must be >= 0, got {max_iter}")
    if cfg.checkpoint_period < 1 or cfg.log_period < 1:
        raise AutoQVISError(f"{desc}: train.checkpoint_period and train.log_period must be >= 1")
    meta = dict(checkpoint_meta or {})
    if cfg.freeze_quality_predictor:
        freeze_quality_predictor(dist.unwrap(model))
    found = find_last_checkpoint(out_dir) if resume else None
    if found is None and init_state is not None:
        dist.unwrap(model).load_state_dict(init_state)
    optimizer = build_optimizer(model, cfg)
    scaler = grad_scaler(cfg, next(model.parameters()).device)
    ema = WeightEMA(dist.unwrap(model), cfg.ema_decay) if cfg.ema_decay > 0 else None
    start, last_good = 0, None
    if found is not None:
        last_good, state = found
        _restore(model, optimizer, state, last_good, scaler, ema)
        start = int(state["iteration"])
    _check_same_start(start, out_dir, desc)

    final = out_dir / FINAL_NAME
    main = dist.is_main_process()
    log = _JsonlLog(out_dir / LOG_NAME, keep_until=start) if main else None
    try:
        if start < max_iter or last_good != final:
            last_good = _run(_Run(model, batches, cfg, runtime or RuntimeConfig(), out_dir, optimizer, scaler, meta,
                                  log, desc, progress, ema), start, max_iter, last_good)
            if main:
                _save_checkpoint(final, model, optimizer, max(start, max_iter), meta, scaler, ema, final=True)
        if ema is not None:  # the stage's result is the average (val_fn and the caller see it)
            dist.unwrap(model).load_state_dict(ema.state_dict())
        if val_fn is not None:
            _validate(model, val_fn, max(start, max_iter), log)
    finally:
        if log is not None:
            log.close()
    dist.barrier()
    return final


@dataclass
class _Run:
    """What the iterations of one ``train_loop`` call work with (set up before the first one)."""

    model: nn.Module
    batches: Batches
    cfg: TrainConfig
    runtime: RuntimeConfig
    out_dir: Path
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # None without float16 autocast
    meta: dict[str, Any]  # stored in each checkpoint
    log: _JsonlLog | None  # None on ranks other than 0
    desc: str
    progress: bool
    ema: WeightEMA | None = None  # train.ema_decay > 0: the weight average, updated after each step


def _run(run: _Run, start: int, max_iter: int, last_good: Path | None) -> Path | None:
    """Iterations ``start .. max_iter-1``; returns the path of the last checkpoint written (``last_good`` if none)."""
    model, batches, cfg, out_dir, optimizer = run.model, run.batches, run.cfg, run.out_dir, run.optimizer
    desc, meta, log, scaler = run.desc, run.meta, run.log, run.scaler
    device = next(model.parameters()).device
    use_amp, dtype = cfg.amp and device.type == "cuda", amp_dtype(cfg)
    rank, main = dist.get_rank(), dist.is_main_process()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    fast_path.prepare(dist.unwrap(model), run.runtime)
    ddp = data_parallel(dist.unwrap(model), device)
    tb = _tensorboard(out_dir, cfg.tensorboard)
    bar = tqdm(total=max_iter, initial=start, desc=desc, disable=not (run.progress and main), mininterval=1.0)
    window, t0 = _Window(), time.perf_counter()
    model.train()
    try:
        t_data, c_data = time.perf_counter(), time.process_time()
        for it, batch in zip(range(start, max_iter), batch_loader(batches, start, max_iter, cfg.num_workers)):
            data_time = time.perf_counter() - t_data
            torch.manual_seed(iteration_seed(batches.seed, it, rank))
            lr = set_lr(optimizer, cfg, it)
            losses = _step(model, ddp, _to_device(batch, device), use_amp, dtype)
            total = sum(losses.values())
            values = {k: float(v.detach()) for k, v in losses.items()}
            values["total_loss"] = float(total.detach())
            # means over the ranks: the log shows the whole batch, and a non-finite loss stops every rank
            values = dist.all_reduce_mean(values)
            finite = math.isfinite(values["total_loss"])
            if not finite and cfg.nonfinite_loss == "stop":
                bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
                kept = f"the last good checkpoint is {last_good}" if last_good else "no checkpoint was written"
                raise AutoQVISError(f"{desc}: iteration {it + 1}: the loss is not finite ({bad}); stopped, {kept}")
            optimizer.zero_grad(set_to_none=True)
            if not finite:  # "skip": no update; every rank sees the same mean, so all skip together
                values = {"skipped_steps": 1.0}
            elif scaler is None:
                total.backward()
                if cfg.clip_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                optimizer.step()
            else:  # clip the true gradients; a step with inf/NaN gradients is skipped and the scale lowered
                scaler.scale(total).backward()
                scaler.unscale_(optimizer)
                if cfg.clip_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad_norm)
                scaler.step(optimizer)
                scaler.update()
            if run.ema is not None and finite:
                run.ema.update(dist.unwrap(model))
            done = it + 1
            # wall and CPU seconds per iteration: on a shared machine the CPU time is the stable one
            window.add({**values, "time": time.perf_counter() - t_data, "cpu_time": time.process_time() - c_data,
                        "data_time": data_time})
            bar.update(1)
            bar.set_postfix(loss=f"{values.get('total_loss', math.nan):.3f}", refresh=False)
            if main and (done % cfg.log_period == 0 or done == max_iter or it == start):
                record = {"iteration": done, **window.pop(), "lr": lr, "elapsed": time.perf_counter() - t0}
                log.write(record)
                if tb is not None:
                    for k, v in record.items():
                        if k != "iteration":
                            tb.add_scalar(k, v, done)
            if main and done % cfg.checkpoint_period == 0 and done < max_iter:
                last_good = checkpoint_path(out_dir, done)
                _save_checkpoint(last_good, model, optimizer, done, meta, scaler, run.ema)
            t_data, c_data = time.perf_counter(), time.process_time()
    finally:
        bar.close()
        if tb is not None:
            tb.close()
    return last_good


def _validate(model: nn.Module, val_fn, iteration: int, log: _JsonlLog | None) -> None:
    model.eval()
    with torch.no_grad():
        metrics = val_fn(dist.unwrap(model))
    if log is not None:
        log.write({"iteration": iteration, "val": metrics})


__all__ = [
    "train_loop",
    "param_groups",
    "build_optimizer",
    "lr_factor",
    "set_lr",
    "freeze_quality_predictor",
    "iteration_seed",
    "amp_dtype",
    "grad_scaler",
    "find_last_checkpoint",
    "checkpoint_path",
    "data_parallel",
]
