"""The project's one exception type: a message a user can act on."""

from __future__ import annotations

import re


class AutoQVISError(Exception):
    """A user-facing error. The CLI prints ``str(err)`` on one line and exits non-zero.

    Messages name the input (file, record, field) and what is wrong with it, e.g.
    ``"train.json: annotation id 7: segmentations has 5 entries, video 3 has 6 frames"``.
    """

    exit_code = 2


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (for one-line errors), without ANSI colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()  # torch decorates some messages with ANSI bold
    return text.splitlines()[0].strip() if text else type(e).__name__
