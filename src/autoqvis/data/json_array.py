"""Parse the elements of a large json array in parts, e.g. one part per worker process.

A results file is one json array of ~30,000 objects (150 MB for YouTubeVIS val); parsing it whole is a
second of serial work before anything can run in parallel. :func:`split_array` cuts the file's bytes
at element boundaries found by a pattern, :func:`parse_part` parses one part. The pattern is only a
guess, but a wrong cut cannot go unnoticed: part ``i`` is parsed as ``[`` + its bytes + ``]`` (the
first part keeps the file's own ``[``, the last its own ``]``), and that parses only if the cut that
ends the part lies outside every string, directly inside the outer array, after a complete element.
By induction over the parts, when every part parses, the parts' elements are the file's elements.
A part that does not parse returns None: the caller then reads the file whole (and reports its error).
"""

from __future__ import annotations

import json
import re
from typing import Any

try:  # optional: about a quarter faster on RLE-heavy files, more on numbers
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

_SPACE = rb"[ \t\r\n]*"
# "}, {" followed by a key other than an RLE's: a guess at a boundary between two results (objects
# holding lists of RLE objects)
RESULT_BOUNDARY = re.compile(rb"\}" + _SPACE + rb"," + _SPACE
                             + rb"(?=\{" + _SPACE + rb'"(?!size"|counts")[^"\\]*"' + _SPACE + rb":)")


def split_array(raw: bytes, parts: int, boundary: re.Pattern[bytes] = RESULT_BOUNDARY) -> list[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of at most ``parts`` parts of roughly equal size.

    raw: the file's bytes (a json array of objects; anything else gives one part). A part's range
    runs from its first element (the file's start for the first part) to the ``}`` that ends its
    last element (the file's end for the last part).
    """
    if parts <= 1 or not raw.lstrip().startswith(b"["):
        return [(0, len(raw))]
    ranges, start = [], 0
    for i in range(1, parts):
        found = boundary.search(raw, max(start, len(raw) * i // parts))
        if found is None:
            break
        ranges.append((start, found.start() + 1))
        start = found.end()
    ranges.append((start, len(raw)))
    return ranges


def parse_part(raw: bytes, ranges: list[tuple[int, int]], i: int) -> list[Any] | None:
    """The elements of part ``i`` of :func:`split_array`'s ``ranges``, or None if it does not parse
    as that part of a json array (NaN / Infinity literals included: json does not allow them)."""
    start, end = ranges[i]
    text = b"".join((b"[" if i > 0 else b"", memoryview(raw)[start:end], b"]" if i < len(ranges) - 1 else b""))
    try:
        value = loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, list) else None


def loads(text: bytes) -> Any:
    """json.loads (orjson when installed), refusing NaN / Infinity with a ValueError."""
    if orjson is not None:
        return orjson.loads(text)  # refuses NaN / Infinity itself
    return json.loads(text, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not allowed in json")
