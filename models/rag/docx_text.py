"""The text of a Word (.docx) document, read in one pass over its XML within a budget.

python-docx builds the whole document tree and resolves merged table cells recursively: a
3.5 KB file of 300,000 empty paragraphs took seconds, and a 1.2 KB table of vertically merged
rows took 37 s before failing with RecursionError. Here the body (word/document.xml, whose
unpacked size the caller has bounded) is first counted: past `max_elements` XML elements it is
refused before any parsing. Then lxml's iterparse streams it once (no entities, no network,
libxml2's depth and size guards on), handing Python only the ends of paragraphs and table rows:
paragraphs become lines and rows "cell | cell" lines, in document order; a merged cell is read
once, where it starts; what was read is dropped, so memory stays flat.
"""

from __future__ import annotations

import io
import time
import zipfile

from lxml import etree

W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
P, T, TAB, BR, CR, TC, TR = (W + tag for tag in ("p", "t", "tab", "br", "cr", "tc", "tr"))
_BREAKS = {TAB: "\t", BR: "\n", CR: "\n"}
_CHECK_EVERY = 1024  # paragraphs and rows between clock checks


class TooComplex(ValueError):
    """The document passed its element or time budget; the message says which."""


def _inside(element, tags: tuple[str, ...]) -> bool:
    parent = element.getparent()
    while parent is not None:
        if parent.tag in tags:
            return True
        parent = parent.getparent()
    return False


def _paragraph_text(paragraph) -> str:
    return "".join(node.text or "" if node.tag == T else _BREAKS[node.tag]
                   for node in paragraph.iter(T, TAB, BR, CR))


def _row_text(row) -> str:
    cells = []
    for cell in row.iterchildren(TC):
        cells.append(" ".join(text for text in (_paragraph_text(p) for p in cell.iter(P)
                                                if not _inside_before(p, cell)) if text))
    return " | ".join(cells)


def _inside_before(paragraph, stop) -> bool:
    """True for a paragraph nested in another paragraph below `stop` (a text box): its text is
    already part of the outer paragraph's."""
    parent = paragraph.getparent()
    while parent is not None and parent is not stop:
        if parent.tag == P:
            return True
        parent = parent.getparent()
    return False


def docx_text(data: bytes, max_elements: int, max_seconds: float) -> str:
    """The body text of a .docx; TooComplex past `max_elements` elements or `max_seconds`."""
    deadline = time.monotonic() + max_seconds
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        xml = zf.read("word/document.xml")
    elements = xml.count(b"<") - xml.count(b"</") - xml.count(b"<?") - xml.count(b"<!")
    if elements > max_elements:
        raise TooComplex(f"it has {elements:,} XML elements; the limit is {max_elements:,}")
    lines: list[str] = []
    events = etree.iterparse(io.BytesIO(xml), events=("end",), tag=(P, TR), resolve_entities=False,
                             no_network=True, load_dtd=False, huge_tree=False)
    for count, (_, element) in enumerate(events, 1):
        if count % _CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise TooComplex(f"reading it took longer than {max_seconds:g} s")
        if _inside(element, (P, TC)):
            continue  # read with the paragraph or the table row around it
        lines.append(_paragraph_text(element) if element.tag == P else _row_text(element))
        element.clear()
        while element.getprevious() is not None:
            del element.getparent()[0]
    return "\n".join(lines)
