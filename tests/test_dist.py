"""torchrun / DDP: two CPU processes (gloo) against one, on the small toy world.

The slow tests launch ``python -m torch.distributed.run --standalone --nproc_per_node 2 -m autoqvis ...`` and
check that (a) the commands finish, (b) the pseudo-labels, val results and predictions written by two processes
are byte for byte those of one process with the same weights, (c) a checkpoint written by two processes resumes
in one. One torch thread per process everywhere, so that both sides compute the same floats.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from autoqvis import load_config
from autoqvis.core import dist

REPO = Path(__file__).resolve().parents[1]
TOY_INIT = REPO / "src" / "autoqvis" / "assets" / "toy_init.pt"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}


def _autoqvis(args: list[str], cwd: Path, nproc: int = 1, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``autoqvis ARGS`` in ``nproc`` processes (torchrun when nproc > 1); fails the test on a non-zero exit."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)] if nproc > 1 else []
    proc = subprocess.run([sys.executable, *launcher, "-m", "autoqvis", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from autoqvis.data.toyworld import write_toyworld

    root = tmp_path_factory.mktemp("dist")
    write_toyworld(root / "world", size="small", seed=0)
    return root


@pytest.fixture(scope="module")
def selftrain_two(world: Path) -> Path:
    """Round 0 labels with the shipped toy model, round 1 trains 2 DDP iterations and labels again."""
    _autoqvis(["selftrain", "--config", "toy", "--synthetic", "world/source.json", "--unlabeled", "world/train.json",
               "--val", "world/val.json", "--init", str(TOY_INIT), "--out", "two", "--rounds", "1", "--max-iters", "2",
               "--tau", "0.3", "--no-progress", "train.checkpoint_period=1"], world, nproc=2)
    return world / "two"


# ------------------------------------------------------------------------------------------ fast
def test_shards_cover_every_item_once_and_one_process_maps_in_order():
    parts = [list(dist.shard(7, r, 3)) for r in range(3)]
    assert parts == [[0, 3, 6], [1, 4], [2, 5]]
    calls = []
    out = list(dist.ordered_map(lambda x: x * x, [3, 1, 2], on_item=lambda: calls.append(1)))
    assert out == [(3, 9), (1, 1), (2, 4)] and len(calls) == 3
    assert dist.broadcast_object({"a": 1}) == {"a": 1} and dist.all_gather_object(5) == [5]
    assert dist.all_reduce_mean({"x": 2.5}) == {"x": 2.5} and dist.get_world_size() == 1


def _sample(num_objects: int) -> dict:
    masks = torch.zeros(num_objects, 3, 64, 64, dtype=torch.bool)
    for i in range(num_objects):
        masks[i, :, 8 + 16 * i:24 + 16 * i, 8:40] = True
    return {"frames": torch.rand(3, 3, 64, 64) * 255, "masks": masks,
            "labels": torch.zeros(num_objects, dtype=torch.int64), "source": "synthetic"}


@pytest.mark.parametrize("stage", ["initial", "round"])
@pytest.mark.parametrize("num_objects", [2, 0])
def test_every_trainable_parameter_reaches_the_loss(stage, num_objects):
    """DDP runs with find_unused_parameters=False: a trainable parameter without a gradient would hang it."""
    from autoqvis import build_model
    from autoqvis.engine.trainer import freeze_quality_predictor
    from autoqvis.selftrain.loop import round_config

    cfg = load_config("toy")
    cfg = round_config(cfg) if stage == "round" else cfg
    model = build_model(cfg).train()
    if cfg.train.freeze_quality_predictor:
        assert freeze_quality_predictor(model) == 14
    losses = model.forward_train([_sample(num_objects), _sample(num_objects)])
    sum(losses.values()).backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) > 100
    assert [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None] == []


def test_one_process_end_process_returns():
    dist.teardown()
    assert dist.end_process(3) is None  # a single process ends the normal way


def test_two_gloo_ranks_leave_with_their_exit_code_and_flushed_output(tmp_path):
    script = tmp_path / "leave.py"
    script.write_text(
        "import sys\n"
        "from autoqvis.core import dist\n"
        "with dist.launched('cpu'):\n"
        "    rank = dist.get_rank()\n"
        "    print(f'rank {rank} done', end='')  # no newline: only a flush gets it out\n"
        "dist.end_process(0)\n"
        "sys.exit(7)  # not reached under torchrun\n")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], env=ENV, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rank 0 done" in proc.stdout and "rank 1 done" in proc.stdout


# ------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_two_process_selftrain_writes_what_one_process_writes(world, selftrain_two):
    two = selftrain_two
    # (a) both rounds finished; round 1 trained 2 DDP iterations from the balanced synthetic/pseudo batches
    assert (two / "round_1" / "model.pt").is_file() and (two / "summary.json").is_file()
    log = [json.loads(line) for line in (two / "round_1" / "train" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [1, 2] and all(r["total_loss"] > 0 for r in log)
    stats = json.loads((two / "round_0" / "stats.json").read_text())
    assert stats["tracks_after_nms"] > 5 and stats["training_set"]["eligible_videos"] >= 1
    # (b) one process, same weights: the same bytes
    _autoqvis(["selftrain", "--config", "toy", "--synthetic", "world/source.json", "--unlabeled", "world/train.json",
               "--val", "world/val.json", "--init", str(TOY_INIT), "--out", "one", "--rounds", "0", "--tau", "0.3",
               "--no-progress"], world)
    for name in ("detections.jsonl", "pseudo_labels.json", "stats.json", "val_results.json", "metrics.json"):
        assert (world / "one" / "round_0" / name).read_bytes() == (two / "round_0" / name).read_bytes(), name
    _autoqvis(["selftrain", "--config", "toy", "--synthetic", "world/source.json", "--unlabeled", "world/train.json",
               "--init", str(two / "round_1" / "model.pt"), "--out", "one_r1", "--rounds", "0", "--tau", "0.3",
               "--no-progress"], world)
    assert (world / "one_r1" / "round_0" / "detections.jsonl").read_bytes() == \
        (two / "round_1" / "detections.jsonl").read_bytes()


@pytest.mark.slow
def test_two_process_checkpoint_resumes_in_one_process(world):
    args = ["train", "--config", "toy", "--synthetic", "world/source.json", "--out", "train2", "--no-progress",
            "train.checkpoint_period=1"]
    _autoqvis([*args, "--max-iters", "2"], world, nproc=2)
    out = world / "train2"
    assert sorted(p.name for p in out.glob("model_*.pt")) == ["model_0000001.pt", "model_final.pt"]
    two = torch.load(out / "model_final.pt", weights_only=True)
    assert two["iteration"] == 2
    _autoqvis([*args, "--max-iters", "3", "--resume"], world)
    one = torch.load(out / "model_final.pt", weights_only=True)
    assert one["iteration"] == 3
    # the optimizer state came from the 2-process checkpoint: Adam has taken 3 steps, not 1
    assert {float(s["step"]) for s in one["optimizer"]["state"].values()} == {3.0}
    moved = [k for k, v in one["model"].items() if v.is_floating_point() and not torch.equal(v, two["model"][k])]
    assert len(moved) > 50
    log = [json.loads(line)["iteration"] for line in (out / "log.jsonl").read_text().splitlines()]
    assert log == [1, 2, 3]


@pytest.mark.slow
def test_two_process_predict_writes_what_one_process_writes(world):
    args = ["predict", "--checkpoint", str(TOY_INIT), "--input", "world/val.json", "--no-overlays"]
    _autoqvis([*args, "--out", "pred2"], world, nproc=2)
    _autoqvis([*args, "--out", "pred1"], world)
    for name in ("results.json", "videos.json"):
        assert (world / "pred2" / name).read_bytes() == (world / "pred1" / name).read_bytes(), name
    results = json.loads((world / "pred2" / "results.json").read_text())
    videos = json.loads((world / "pred2" / "videos.json").read_text())["videos"]
    assert len(videos) >= 2 and {r["video_id"] for r in results} == {v["id"] for v in videos}
