"""``autoqvis`` command line: one subcommand per stage, each implemented in ``autoqvis.commands.<name>``.

Every subcommand module defines ``add_arguments(parser)``, ``run(args) -> int`` and usually ``DESCRIPTION``; its
one-line help is in :data:`COMMANDS`.
Modules are imported only when their subcommand runs, so ``autoqvis --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

from .core.errors import AutoQVISError

# name -> (module under autoqvis.commands, one-line help); order is the order of the data flow.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "run the whole AutoQ-VIS loop on the built-in toy world (CPU, minutes)"),
    "toyworld": ("toyworld", "generate the procedural toy world (stills, unlabeled videos, val split)"),
    "synth": ("synth", "turn still images + COCO masks into a YTVIS synthetic video set (ImageCut2Video)"),
    "train": ("train", "initial stage: train the VIS model + quality predictor on synthetic clips"),
    "selftrain": ("selftrain", "multi-round quality-guided self-training on unlabeled videos"),
    "select": ("select", "re-select a round's pseudo-labels from saved detections (tau sweeps) into a PL.json"),
    "predict": ("predict", "segment and track instances in videos, frame folders or a YTVIS json"),
    "evaluate": ("evaluate", "class-agnostic YouTubeVIS AP/AR of a results json against ground truth"),
    "visualize": ("visualize", "render overlay videos for any YTVIS results file"),
    "convert-checkpoint": ("convert_checkpoint", "convert a detectron2 VideoMaskFormer/VideoCutLER .pth to autoqvis .pt"),
    "convert-masks": ("convert_masks", "convert masks: DAVIS-style PNG folder <-> YouTubeVIS json (not weights)"),
    "report": ("report", "write DIR/report.html: a self-contained page to browse a selftrain/predict/demo folder"),
}

DESCRIPTION = """\
autoqvis: unsupervised video instance segmentation by quality-guided self-training (AutoQ-VIS).

Data flow: still images + pseudo-masks -> synthetic videos -> initial model (train)
-> pseudo-label unlabeled videos, select by quality, fuse, retrain (selftrain) -> predict / evaluate.
Start with `autoqvis demo`; every subcommand has its own --help.
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, import just that subcommand (the others get a bare stub)."""
    parser = argparse.ArgumentParser(
        prog="autoqvis", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_text)
            continue
        mod = importlib.import_module(f"autoqvis.commands.{module}")
        p = sub.add_parser(
            name,
            help=help_text,
            description=getattr(mod, "DESCRIPTION", help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wanted = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(only=wanted if wanted in COMMANDS else "")
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 1
    debug = bool(getattr(args, "debug", False) or os.environ.get("AUTOQVIS_DEBUG"))
    try:
        code = int(args._module.run(args) or 0)
    except AutoQVISError as e:
        if debug:
            traceback.print_exc()
        msg = " ".join(str(e).split("\n"))
        print(f"autoqvis {args.command}: error: {msg}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"autoqvis {args.command}: interrupted", file=sys.stderr)
        return 130
    # a rank of a torchrun run ends here, past the interpreter teardown (core.dist.teardown says why); looked up
    # in sys.modules so that `autoqvis --help` does not import torch
    dist = sys.modules.get("autoqvis.core.dist")
    if dist is not None:
        dist.end_process(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
