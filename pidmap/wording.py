"""Pure: the words every human output is made of — cells, container states, and terminal-safe text.

Command lines, process names, user names (from the container's own /etc/passwd), pod messages and
error texts are written by containers and clusters, not by pidmap: a command line can carry
``ESC ] 0 ; title BEL`` (which sets the terminal's title), a cursor move that overwrites earlier
rows, or U+202E (RIGHT-TO-LEFT OVERRIDE) that makes the rest of a line read backwards. Every human
output (table, wide, tree, whois, watch, errors and notes) passes such text through ``escape``, as
``ps`` and ``kubectl`` do. JSON and YAML keep the exact text: both encoders already write control
characters as escapes (``json.dumps`` with ``ensure_ascii``, ``yaml.safe_dump`` without
``allow_unicode``), so the terminal sees none of them there either.
"""

from __future__ import annotations

import re
import unicodedata

from pidmap.model import Container

MISSING = "-"

# Categories that do not draw a glyph but act on the terminal or on the text around them:
# Cc control characters (C0, DEL, C1: ESC, BEL, CSI ...), Cf format characters (the bidi
# embeddings and overrides U+202A-U+202E, the isolates U+2066-U+2069, the marks U+200E/U+200F,
# zero-width characters, the BOM), Zl/Zp (line and paragraph separators, which some terminals
# break lines on), Cs (lone surrogates from undecodable bytes), Co and Cn (private and unassigned:
# no font agrees on them).
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
# Everything printable in ASCII plus the space: the fast path for almost every cell.
_PLAIN = re.compile(r"[\x20-\x7e]*")


def _escaped(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape(text: str) -> str:
    """``text`` with every character that could act on a terminal written as an escape.

    ``\\x1b`` for ESC, ``\\x07`` for BEL, ``\\x9b`` for the C1 CSI, ``\\u202e`` for a direction
    override, as ``ps`` shows them. A backslash already in the text is left alone: command lines
    carry regexes and ``printf`` formats, which read better as typed; the escapes only have to be
    harmless, and every escape is printable ASCII.
    """
    if _PLAIN.fullmatch(text):
        return text
    return "".join(_escaped(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char
                   for char in text)


def escape_lines(text: str) -> str:
    """``escape`` for a block of text whose line breaks are pidmap's own: each line on its own."""
    return "\n".join(escape(line) for line in text.split("\n"))


def cell(value: object) -> str:
    """One value in a table or a line: ``-`` for a value that cannot be seen, else its escaped text."""
    return MISSING if value is None else escape(str(value))


def short(text: str, width: int) -> str:
    """Escaped and cut to at most ``width`` characters, ending in ``...`` when cut; an escape such
    as ``\\x1b`` is kept whole or left out, never cut in the middle."""
    safe = escape(text)
    if len(safe) <= width:
        return safe
    kept: list[str] = []
    used = 0
    for char in text:
        piece = escape(char)
        if used + len(piece) > width - 3:
            break
        kept.append(piece)
        used += len(piece)
    return "".join(kept) + "..."


def state_text(container: Container) -> str:
    """A container's state in words: ``running``, ``waiting (CrashLoopBackOff)``, ``terminated (exit 1)``."""
    reason = escape(container.reason) if container.reason else None
    if container.state == "waiting":
        return f"waiting ({reason})" if reason else "waiting"
    if container.state == "terminated":
        return f"terminated (exit {container.exit_code}" + (f", {reason}" if reason else "") + ")"
    return container.state
