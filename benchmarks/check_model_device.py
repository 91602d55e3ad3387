"""Run the reference comparisons of tests/test_model_reference.py on another device (e.g. CUDA) and print the
largest differences, plus one bf16-autocast training step of the toy config.

    python benchmarks/check_model_device.py --device cuda
TF32 is switched off so that the numbers are comparable with the float32 CPU reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
REF = REPO / "tests" / "reference"


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.detach().float().cpu() - b.float()).abs().max().item()


def check_reference(device: torch.device) -> dict:
    from autoqvis import load_checkpoint, load_config
    from autoqvis.model.vis_model import build_model

    out: dict = {}
    model = build_model(load_config(REPO / "configs" / "reference_autoqvis_tiny.yaml")).eval()
    state = {**torch.load(REF / "tiny" / "state_dict.pt", weights_only=True),
             **torch.load(REF / "autoqvis_tiny" / "predictor_state_dict.pt", weights_only=True)}
    tmp = Path("/tmp/_aq_state.pt")
    torch.save(state, tmp)
    load_checkpoint(model, tmp, strict=True)
    model.to(device)
    inp = torch.load(REF / "autoqvis_tiny" / "input.pt", weights_only=True)
    ref = torch.load(REF / "autoqvis_tiny" / "outputs.pt", weights_only=True)
    with torch.no_grad():
        raw = model.forward_raw(inp["frames"].to(device))
        res = model.inference(inp["frames"].to(device))
    out["pred_logits"] = _max_diff(raw["pred_logits"], ref["pred_logits"][0])
    out["pred_masks"] = _max_diff(raw["pred_masks"], ref["pred_masks"][0])
    out["pred_maskiou"] = _max_diff(raw["pred_maskiou"], ref["pred_maskiou"][0, :, :, 0])
    out["query_order_equal"] = res["query_indices"].cpu().tolist() == ref["inference"]["query_indices"].tolist()
    out["scores"] = _max_diff(res["scores"], ref["inference"]["pred_scores"])
    out["mask_pixels_differ"] = int((res["masks"].cpu() != ref["inference"]["pred_masks"]).sum())
    pad_in = torch.load(REF / "tiny" / "input_pad.pt", weights_only=True)
    pad_ref = torch.load(REF / "tiny" / "outputs_pad.pt", weights_only=True)
    with torch.no_grad():
        raw = model.forward_raw(pad_in["frames"].to(device))
    out["pad_pred_masks"] = _max_diff(raw["pred_masks"], pad_ref["pred_masks"][0])
    return out


def check_train_step(device: torch.device) -> dict:
    from autoqvis import load_config
    from autoqvis.model.vis_model import build_model

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_model import _sample

    torch.manual_seed(0)
    model = build_model(load_config(REPO / "configs" / "toy.yaml")).to(device).train()
    batch = [{k: v.to(device) if torch.is_tensor(v) else v for k, v in _sample(3, 128, 128, i).items()}
             for i in range(2)]
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        losses = model.forward_train(batch)
    total = sum(v.float() for v in losses.values())
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    return {"n_losses": len(losses), "total_loss": round(total.item(), 4), "finite": bool(torch.isfinite(total)),
            "params_with_grad": sum(g is not None for g in grads), "params": len(grads)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(json.dumps({"device": str(device), "reference_max_abs_diff": check_reference(device)}))
    print(json.dumps({"device": str(device), "toy_train_step_bf16": check_train_step(device)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
