"""``autoqvis convert-checkpoint IN.pth OUT.pt``: a detectron2 VideoMaskFormer / VideoCutLER / AutoQ-VIS
checkpoint as an autoqvis ``.pt`` (checked against the model of ``--config`` first)."""

from __future__ import annotations

import argparse


DESCRIPTION = """\
Convert a detectron2 checkpoint (VideoCutLER's videocutler_m2f_rn50.pth, AutoQ-VIS .pth, a .pkl with numpy
arrays, or a bare state dict) into an autoqvis .pt. The file is loaded into the model of --config first:
tensors whose shapes do not fit are refused, model entries the file lacks (e.g. the quality predictor of a
VideoCutLER file) are listed. Only the file's own tensors are written; `criterion.*` entries are dropped.
Files are read with weights_only semantics: no code in them runs.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="IN.pth", help="detectron2 checkpoint (.pth / .pkl) or hf://OWNER/REPO/FILE")
    parser.add_argument("output", metavar="OUT.pt", help="autoqvis checkpoint to write")
    parser.add_argument("--config", default=None,
                        help="model config to check against (default: the file's own, else inferred from its keys: "
                             "R50 VideoCutLER / AutoQ-VIS -> ytvis19_r50, quality predictor on only if the file has it)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")


def run(args: argparse.Namespace) -> int:
    from ..model.checkpoint import (  # why: --help must not wait for torch
        checkpoint_config, convert_checkpoint, resolve_checkpoint)
    from ..model.vis_model import build_model  # why: --help must not wait for torch
    src = resolve_checkpoint(args.input)
    cfg = checkpoint_config(src, args.config, args.overrides)
    model = build_model(cfg)
    report = convert_checkpoint(src, args.output, model=model, config=cfg.to_dict())
    print(report.summary())
    if report.ignored:
        print(f"dropped {len(report.ignored)} non-weight entries: {', '.join(report.ignored[:5])}")
    print(f"wrote {args.output}")
    return 0
