"""JSON text made by hand where ``json`` costs more than the line it writes (RFC 8259 §7)."""

from __future__ import annotations

import json

_ENCODER = json.JSONEncoder(ensure_ascii=False)


def json_str(text: str) -> str:
    """``text`` as a JSON string, as ``json.dumps(text, ensure_ascii=False)`` writes it.

    Printable ASCII without a quote or a backslash needs no escape (RFC 8259 §7), and
    the scans that tell so run in C; anything else goes through the encoder.
    """
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return f'"{text}"'
    return _ENCODER.encode(text)
