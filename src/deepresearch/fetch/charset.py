"""Decode text the way a browser would, so pages in legacy charsets read as their authors wrote them.

A good share of the web, and of the files on people's disks, is not UTF-8: Shift-JIS and GBK pages,
Windows-1252 documents labelled ISO-8859-1, pages that declare nothing at all. The order follows the
browsers': a byte-order mark, then the declared charset (the HTTP header, else a ``<meta>`` tag or an
XML declaration, found by ``declared_charset``), upgraded to the superset browsers really decode
with; then UTF-8 (also when only a few bytes are broken); then a statistical guess by
charset_normalizer, leaning to windows-1252 where Western code pages tie. Pure functions of bytes.
"""

from __future__ import annotations

import codecs
import re

# WHATWG maps these labels to a superset that browsers actually decode with; pages depend on it
# ("iso-8859-1" pages with curly quotes are really windows-1252).
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "big5": "big5hkscs",
}
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_DETECT_BYTES = 65_536
_MULTIBYTE = frozenset(
    {"utf_8", "cp932", "shift_jis", "euc_jp", "iso2022_jp", "gb18030", "gbk", "gb2312", "hz"}
    | {"big5", "big5hkscs", "cp950", "euc_kr", "cp949", "johab"}
)
_META_CHARSET_RE = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_:.-]+)""", re.IGNORECASE)
_XML_ENCODING_RE = re.compile(rb"""^<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_:.-]+)""")


def decode_text(body: bytes, charset: str | None) -> str:
    """Decode by byte-order mark, then the declared charset, then UTF-8, then a detected charset.

    Bytes that do not fit the chosen charset become U+FFFD; a body that is UTF-8 with a few broken
    bytes stays UTF-8 rather than being guessed into something else.
    """
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return body.decode(encoding, errors="replace")
    declared = _codec(charset)
    if declared is not None:
        return body.decode(declared, errors="replace")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        pass
    as_utf8 = body.decode("utf-8", errors="replace")
    broken = as_utf8.count("\ufffd")
    multibyte = len(as_utf8) - len(as_utf8.encode("ascii", errors="ignore")) - broken
    if multibyte > 0 and broken <= multibyte:
        return as_utf8
    return body.decode(_detect_charset(body) or "utf-8", errors="replace")


def declared_charset(body: bytes) -> str | None:
    """A charset named by an XML declaration or a ``<meta>`` tag near the top of the document."""
    head = body[:16384]
    match = _XML_ENCODING_RE.match(head.lstrip()) or _META_CHARSET_RE.search(head)
    return match.group(1).decode("ascii") if match else None


def _codec(charset: str | None) -> str | None:
    """Python's codec for a charset label, upgraded to the superset browsers use; ``None`` if unknown."""
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None
    return _SUPERSETS.get(name, name)


def _detect_charset(body: bytes) -> str | None:
    """charset_normalizer's guess from the first 64 KiB, leaning to windows-1252 for Western text."""
    from charset_normalizer import from_bytes

    sample = body[:_DETECT_BYTES]
    if len(body) > _DETECT_BYTES and (cut := sample.rfind(b"\n")) > _DETECT_BYTES // 2:
        sample = sample[: cut + 1]  # never cut a multi-byte character in half
    # Without NUL bytes a body is not UTF-16/32, however well the bytes happen to pair up.
    wide_ok = b"\x00" in sample
    matches = [m for m in from_bytes(sample) if wide_ok or not m.encoding.startswith(("utf_16", "utf_32"))]
    if not matches:
        return None
    best = min(matches, key=lambda m: (m.chaos, -m.coherence))
    if best.encoding in _MULTIBYTE:
        return str(best.encoding)  # decoding cleanly as a multi-byte charset is strong evidence
    # Western single-byte text scores the same under several code pages (and short text under
    # dozens); windows-1252 is by far the most common on the web and what browsers assume.
    western = next((m for m in matches if m.encoding == "cp1252"), None)
    if western is not None:
        if western.chaos <= best.chaos + 0.01 and western.coherence >= best.coherence - 0.05:
            return "cp1252"
    elif best.coherence == 0:
        try:
            sample.decode("cp1252")
        except UnicodeDecodeError:
            pass
        else:
            return "cp1252"
    return str(best.encoding)
