"""Making client-supplied text safe to put in a log line.

A request's URI, headers and reason phrase come from the client; written to a
log as they are, a CR or LF in them starts a forged log line.  :func:`escape`
turns every C0 and C1 control character (and the Unicode line and
paragraph separators) into a visible escape sequence, and escapes the quote and the
backslash so that quoted fields stay unambiguous.
"""

from __future__ import annotations

# C0 and C1 controls (C1 includes NEL, a line break to some log shippers,
# and CSI, a terminal escape), DEL, and the Unicode line separators.
_CONTROLS = [*range(0x20), *range(0x7F, 0xA0)]
_ESCAPES: dict[int, str] = {code: f"\\x{code:02x}" for code in _CONTROLS}
_ESCAPES.update({0x2028: "\\u2028", 0x2029: "\\u2029"})
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})

THREE_DIGITS = tuple(f"{number:03d}" for number in range(1000))
"""``"000"`` to ``"999"``: the milliseconds of a time, looked up where a
``:03d`` format would be parsed again for every record."""


def _plain(text: str) -> bool:
    # Most values need nothing; checking first keeps the access log cheap.
    return text.isprintable() and '"' not in text and "\\" not in text


def escape(text: str) -> str:
    """Return ``text`` with control characters, quotes and backslashes escaped.

    >>> escape('GET /\\r\\nforged')
    'GET /\\\\x0d\\\\x0aforged'
    """
    return text if _plain(text) else text.translate(_ESCAPES)


def escape_each(*texts: str) -> tuple[str, ...]:
    """:func:`escape` each of ``texts``.

    They are checked together, in one pass: most values need nothing.
    """
    if _plain("".join(texts)):
        return texts
    return tuple(text.translate(_ESCAPES) for text in texts)
