"""Time the quality predictor and the criterion at the paper's R50 training sizes; optional device checks.

    python benchmarks/bench_criterion.py [--device cuda] [--amp] [--size r50|toy] [--repeat N] [--check]

Sizes per step (``r50``): batch 2 clips x 3 frames at 384x640 (padded), 100 queries, 10 predictions (last + 9
aux), 12,544 points, 256-channel stride-32 features, predictor 256 conv / 1024 FC, 5 targets per clip.
Reports ms per step for: the predictor on all 10 predictions (forward + backward), the same with the
authors' layout (feature map repeated per query, concatenated with the mask) for comparison, and the whole
criterion (matching, CE, mask BCE + dice with DropLoss, quality loss; forward + backward), plus peak memory.
``--check`` compares the device's numbers with the CPU's on the tiny reference (tests/reference/autoqvis_tiny).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from autoqvis.core.config import LossConfig  # noqa: E402
from autoqvis.model.criterion import build_criterion, quality_targets  # noqa: E402
from autoqvis.model.quality import QualityPredictor, pool_mask_logits, resize_features  # noqa: E402

SIZES = {  # B, T, Q, Hp, Wp, C (features), conv, fc, points, targets, aux
    "r50": (2, 3, 100, 384, 640, 256, 256, 1024, 12544, 5, 9),
    "toy": (4, 3, 20, 128, 128, 64, 32, 128, 1024, 3, 6),
}


def authors_layout(p: QualityPredictor, features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The same predictor computed as the authors lay it out: features repeated per query, then concatenated."""
    b, q, t = masks.shape[:3]
    feat = resize_features(features).unflatten(0, (b, t))[:, None].expand(b, q, t, -1, -1, -1)
    x = torch.cat([feat, pool_mask_logits(masks)], dim=3).flatten(0, 2)
    x = F.relu(p.maskiou_fcn1(x))
    for conv in (p.maskiou_fcn2, p.maskiou_fcn3, p.maskiou_fcn4):
        x = F.relu(conv(x))
    x = F.relu(p.maskiou_fc2(F.relu(p.maskiou_fc1(x.flatten(1)))))
    return p.maskiou_fc3(x).view(b, q, t)


def make_inputs(size: str, device: torch.device, seed: int = 0) -> tuple:
    b, t, q, hp, wp, c, _, _, _, n, aux = SIZES[size]
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(b * t, c, hp // 32, wp // 32, generator=g)
    layers = [torch.randn(b, q, t, hp // 4, wp // 4, generator=g) * 3 for _ in range(aux + 1)]
    targets = []
    for _ in range(b):
        masks = torch.zeros(n, t, hp, wp, dtype=torch.bool)
        for i in range(n):
            y, x = int(torch.randint(0, hp // 2, (1,), generator=g)), int(torch.randint(0, wp // 2, (1,), generator=g))
            masks[i, :, y : y + hp // 3, x : x + wp // 3] = True
        targets.append({"labels": torch.zeros(n, dtype=torch.int64, device=device), "masks": masks.to(device)})
    return features.to(device), [m.to(device) for m in layers], targets


def timed(fn, device: torch.device, repeat: int) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat * 1000


def bench(size: str, device: torch.device, amp: bool, repeat: int) -> None:
    b, t, q, hp, wp, c, conv, fc, points, n, aux = SIZES[size]
    torch.manual_seed(0)
    predictor = QualityPredictor(c, conv, fc).to(device)
    features, layers, targets = make_inputs(size, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def run_predictor(fn):
        def step():
            leaves = [m.detach().requires_grad_() for m in layers]
            with autocast:
                out = sum(fn(predictor, features, m).float().square().mean() for m in leaves)
            out.backward()
        return step

    criterion = build_criterion(LossConfig(num_points=points), num_classes=1, num_aux=aux, quality=True).to(device)

    def run_criterion():
        leaves = [m.detach().requires_grad_() for m in layers]
        quality = [torch.rand(b, q, t, device=device, requires_grad=True) for _ in leaves]
        logits = [torch.randn(b, q, 2, device=device, requires_grad=True) for _ in leaves]
        outs = [{"pred_logits": lg, "pred_masks": m, "pred_maskiou": qu} for lg, m, qu in zip(logits, leaves, quality)]
        losses = criterion({**outs[-1], "aux_outputs": outs[:-1]}, targets)
        sum(losses[k] * criterion.weight_dict[k] for k in losses).backward()

    rows = []
    for name, fn in [("predictor x10 (fwd+bwd)", run_predictor(QualityPredictor.forward)),
                     ("predictor x10, authors' layout", run_predictor(authors_layout)),
                     ("criterion x10 (fwd+bwd)", run_criterion)]:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ms = timed(fn, device, repeat)
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
        rows.append((name, ms, peak))
    label = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(f"size={size} device={label} amp={amp} repeat={repeat} (B={b}, T={t}, Q={q}, {hp}x{wp}, {points} points)")
    for name, ms, peak in rows:
        print(f"  {name:34s} {ms:9.1f} ms   peak {peak:6.2f} GiB")


def check(device: torch.device) -> None:
    """Device vs CPU on the tiny reference: predictor outputs, quality targets, loss values under bf16 autocast."""
    root = Path(__file__).resolve().parents[1] / "tests" / "reference" / "autoqvis_tiny"
    load = lambda name: torch.load(root / name, weights_only=True)  # noqa: E731
    prefix = "sem_seg_head.predictor.maskiou_feature_extractor."
    state = {k[len(prefix):]: v for k, v in load("predictor_state_dict.pt").items()}
    inter, out, model_ref = load("intermediates.pt"), load("outputs.pt"), load("maskiou_loss_model.pt")
    predictor = QualityPredictor(64, 64, 256)
    predictor.load_state_dict(state)
    predictor.to(device)
    x0 = inter["pixel_decoder_multi_scale_features_0"].to(device)
    ref = out["pred_maskiou"][..., 0]
    with torch.no_grad():
        tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        strict = predictor(x0, out["pred_masks"].to(device)).cpu()
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
        got = predictor(x0, out["pred_masks"].to(device)).cpu()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            got_bf16 = predictor(x0, out["pred_masks"].to(device)).float().cpu()
    diff = float((strict - ref).abs().max())
    assert diff < 2e-4, diff
    print(f"check: predictor fp32 (TF32 off) max |diff| vs reference {diff:.2e} (tolerance 2e-4)")
    print(f"check: predictor fp32 (torch's default TF32 setting) max |diff| {float((got - ref).abs().max()):.2e}")
    print(f"check: predictor bf16 autocast max |diff| vs reference {float((got_bf16 - ref).abs().max()):.2e}")
    tm = model_ref["targets_masks"].to(device)
    for entry, layer in zip(model_ref["per_layer"], [*out["aux_outputs"], out]):
        target = quality_targets(layer["pred_masks"].to(device), [tm])
        loss = F.mse_loss(layer["pred_maskiou"][..., 0].to(device), target)
        assert abs(float(loss) - entry["loss"]) < 1e-5, (entry["name"], float(loss), entry["loss"])
    print("check: quality loss of all 10 layers on the device equals the authors' values (1e-5)")
    criterion = build_criterion(LossConfig(num_points=1024), num_classes=1, num_aux=9, quality=True).to(device)
    layer = lambda o: {"pred_logits": o["pred_logits"].to(device), "pred_masks": o["pred_masks"].to(device),  # noqa
                       "pred_maskiou": o["pred_maskiou"][..., 0].to(device)}
    outputs = {**layer(out), "aux_outputs": [layer(a) for a in out["aux_outputs"]]}
    targets = [{"labels": torch.zeros(2, dtype=torch.int64, device=device), "masks": tm}]
    with torch.autocast(device.type, dtype=torch.bfloat16):
        losses = criterion(outputs, targets)
    assert len(losses) == 40 and all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())
    assert abs(float(losses["loss_maskiou"]) - model_ref["per_layer"][-1]["loss"]) < 1e-5
    print(f"check: criterion under bf16 autocast: 40 finite float32 losses, loss_ce {float(losses['loss_ce']):.4f}, "
          f"loss_mask {float(losses['loss_mask']):.4f}, loss_dice {float(losses['loss_dice']):.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--size", choices=sorted(SIZES), default="r50")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.check:
        check(device)
    bench(args.size, device, args.amp, args.repeat)


if __name__ == "__main__":
    main()
