"""The project's one exception type: a message a user can act on."""

from __future__ import annotations


class AutoQVISError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits non-zero.

    Messages name the input (file, record, field) and what is wrong with it, e.g.
    ``"train.json: annotation id 7: segmentations has 5 entries, video 3 has 6 frames"``.
    """

    exit_code = 2


def where(path: object | None, *parts: object) -> str:
    """Join a location prefix for messages: ``where("a.json", "video 3", "field x")``."""
    items = [str(p) for p in (path, *parts) if p is not None and str(p) != ""]
    return ": ".join(items)
