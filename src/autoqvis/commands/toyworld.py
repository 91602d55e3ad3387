"""``autoqvis toyworld``: write the procedural toy world (stills with pseudo-masks, unlabeled and val videos)."""

from __future__ import annotations

import argparse
import json
import time
from typing import get_type_hints

from ..core.config import _coerce, parse_override  # the config's own YAML-typed key=value parsing
from ..core.errors import AutoQVISError
from ..core.fileio import read_json
from ..data.toyworld import ToyWorldConfig, toyworld_config, write_toyworld

DESCRIPTION = """\
Generate the built-in toy world, seeded and in seconds, in the YouTubeVIS on-disk layout:

  DIR/images/*.jpg + DIR/source.json   COCO stills with imperfect pseudo-masks (feed `autoqvis synth`/`train`)
  DIR/source_gt.json                   the stills' true masks (to measure the pseudo-masks; never for training)
  DIR/train.json                       unlabeled target videos (frames under DIR/JPEGImages/)
  DIR/train_gt.json                    their ground truth (analysis only, never training)
  DIR/val.json                         val videos with ground truth (for `autoqvis evaluate`)

The same seed gives byte-identical files. docs/toyworld.md explains every knob; change one with
key=value (e.g. `miss_rate=0.3 num_val_videos=10`).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed, >= 0 (default 0)")
    parser.add_argument("--size", choices=["small", "default"], default="default",
                        help="small: a tiny world for tests; default: 300 stills, 96 train + 96 val videos (default)")
    parser.add_argument("--overwrite", action="store_true", help="replace a toy world already in --out")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="ToyWorldConfig fields, e.g. miss_rate=0.3")


def _parse_overrides(items: list[str]) -> dict:
    """``["miss_rate=0.3", "video_size=[96,128]"]`` -> {"miss_rate": 0.3, "video_size": [96, 128]} (typed)."""
    hints = get_type_hints(ToyWorldConfig)
    out = {}
    for item in items:
        keys, value = parse_override(item)
        if len(keys) != 1 or keys[0] not in hints:
            raise AutoQVISError(f"override {item!r}: unknown toy world knob (known: {', '.join(hints)})")
        out[keys[0]] = _coerce(value, hints[keys[0]], keys[0])
    return out


def run(args: argparse.Namespace) -> int:
    cfg = toyworld_config(args.size, **_parse_overrides(args.overrides))
    start = time.perf_counter()
    paths = write_toyworld(args.out, cfg, args.seed, size=args.size, overwrite=args.overwrite)
    seconds = time.perf_counter() - start
    realised = read_json(paths["source.json"])["info"]["pseudo_masks"]["realised"]
    print(f"toy world (size {args.size}, seed {args.seed}) written to {args.out} in {seconds:.1f} s:")
    print(f"  {cfg.num_stills} stills -> {paths['source.json']} (pseudo-mask rates: {json.dumps(realised)})")
    print(f"  {cfg.num_train_videos} unlabeled videos -> {paths['train.json']} (ground truth {paths['train_gt.json']})")
    print(f"  {cfg.num_val_videos} val videos -> {paths['val.json']}")
    return 0
