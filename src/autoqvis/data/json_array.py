"""Parse the elements of a large json array in parts, e.g. one part per worker process.

A results file is one json array of ~30,000 objects (150 MB for YouTubeVIS val); parsing it whole is a
second of serial work before anything can run in parallel. :func:`split_array` cuts the file at
element boundaries found by a pattern (reading only a little around each cut), :func:`parse_part`
reads and parses one part. The pattern is only a guess, but a wrong cut cannot go unnoticed: part
``i`` is parsed as ``[`` + its bytes + ``]`` (the first part keeps the file's own ``[``, the last its
own ``]``), and that parses only if the cut that ends the part lies outside every string, directly
inside the outer array, after a complete element. By induction over the parts, when every part
parses, the parts' elements are the file's elements. A part that does not parse gives None: the
caller then reads the file whole (and reports its error).
"""

from __future__ import annotations

import os
import re
from typing import Any, Union

import orjson

Source = Union[bytes, str, "os.PathLike[str]"]  # the json text, or the path of a file holding it

_SPACE = rb"[ \t\r\n]*"
_OPENS_ARRAY = re.compile(_SPACE + rb"\[")
# "}, {" followed by a key other than an RLE's: a guess at a boundary between two results (objects
# holding lists of RLE objects)
RESULT_BOUNDARY = re.compile(rb"\}" + _SPACE + rb"," + _SPACE
                             + rb"(?=\{" + _SPACE + rb'"(?!size"|counts")[^"\\]*"' + _SPACE + rb":)")
_WINDOW = 1 << 16  # bytes read at a time around a cut


def split_array(source: Source, parts: int, boundary: re.Pattern[bytes] = RESULT_BOUNDARY) -> list[tuple[int, int]]:
    """Byte ranges ``(start, end)`` of at most ``parts`` parts of roughly equal size.

    source: a json array of objects (anything else gives one part). A part's range runs from its
    first element (the start of the text for the first part) to the ``}`` that ends its last
    element (the end of the text for the last part).
    """
    size = len(source) if isinstance(source, bytes) else os.path.getsize(source)
    if parts <= 1 or not _OPENS_ARRAY.match(_read(source, 0, min(size, _WINDOW))):
        return [(0, size)]
    ranges, start = [], 0
    for i in range(1, parts):
        pos = max(start, size * i // parts)
        while (found := boundary.search(window := _read(source, pos, min(size, pos + _WINDOW)))) is None:
            if len(window) < _WINDOW:  # the end of the text
                break
            pos += _WINDOW - _WINDOW // 4  # windows overlap: a cut may straddle two
        if found is None:
            break
        ranges.append((start, pos + found.start() + 1))
        start = pos + found.end()
    ranges.append((start, size))
    return ranges


def parse_part(source: Source, ranges: list[tuple[int, int]], i: int) -> list[Any] | None:
    """The elements of part ``i`` of :func:`split_array`'s ``ranges``, or None if it does not parse
    as that part of a json array (NaN / Infinity literals included: json does not allow them)."""
    start, end = ranges[i]
    text = bytearray(end - start + 2)  # "[" + the part + "]"; a space where the part keeps the file's own
    text[0:1] = b"[" if i > 0 else b" "
    text[-1:] = b"]" if i < len(ranges) - 1 else b" "
    _read(source, start, end, into=memoryview(text)[1:-1])
    try:
        value = loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, list) else None


def loads(text: bytes | bytearray) -> Any:
    """orjson.loads, which refuses NaN / Infinity with a ValueError (json does not allow them)."""
    return orjson.loads(text)


def _read(source: Source, start: int, end: int, into: memoryview | None = None) -> bytes:
    """Bytes [start, end) of the source, into ``into`` when given (then returns b""); a file that
    is shorter than that leaves the rest as it was (the part then does not parse)."""
    if isinstance(source, bytes):
        if into is None:
            return source[start:end]
        into[:] = source[start:end]
        return b""
    with open(source, "rb", buffering=0) as f:
        f.seek(start)
        if into is None:
            return f.read(end - start)
        done = 0
        while done < len(into):
            n = f.readinto(into[done:])
            if not n:
                break
            done += n
    return b""
