"""Turn an uploaded file into text sections (one per PDF page), or say plainly why not.

Each refusal names the file and the reason in words a creator can act on: a damaged or
encrypted PDF, a scan with no text layer, an empty file, a binary file renamed ``.txt``, a
type we do not read. Parsing happens before anything is stored, so a bad file never touches
what is already indexed.

Loaders (all verified offline, none AGPL): pypdf for PDF, python-docx for DOCX, trafilatura for
the main text of HTML pages (menus and footers dropped; plain lxml text as a fallback for pages
too small for its heuristics), and charset detection for text files.
"""

from __future__ import annotations

import io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from core.errors import DocumentError, UnsupportedDocumentType

log = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
}
SUPPORTED = "PDF, TXT, Markdown (.md), HTML and DOCX"
# A DOCX is a zip: refuse one that would inflate past this multiple of its own size.
MAX_INFLATION = 100
MAX_FILENAME = 255
LEGACY_DETECT_MIN_BYTES = 2048
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_SPACES = re.compile(r"[ \t\f\v\r]+")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class Section:
    """Text with the page it is on (``None`` for formats without pages)."""

    page: int | None
    text: str


@dataclass(frozen=True)
class ParsedDocument:
    filename: str
    media_type: str
    sections: list[Section]
    pages: int | None

    @property
    def characters(self) -> int:
        return sum(len(s.text) for s in self.sections)


def clean_filename(name: str | None) -> str:
    """A display name from a client's filename: no folders, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = _CONTROL.sub("", base).strip()
    if len(base) > MAX_FILENAME:
        suffix = PurePosixPath(base).suffix[:20]
        base = base[: MAX_FILENAME - len(suffix)] + suffix
    return base or "document"


def media_type_of(filename: str) -> str:
    suffix = PurePosixPath(filename.lower()).suffix
    media = MEDIA_TYPES.get(suffix)
    if media is None:
        what = f"'{suffix}' files" if suffix else "files without an extension"
        raise UnsupportedDocumentType(
            f"{filename}: unsupported type ({what}); knowledge bases read {SUPPORTED}"
        )
    return media


def parse_document(filename: str, content: bytes) -> ParsedDocument:
    """Sections of text from ``content``; raises ``DocumentError`` naming ``filename``."""
    filename = clean_filename(filename)
    media = media_type_of(filename)
    if not content.strip():
        raise DocumentError(f"{filename}: the file is empty")
    if media == "application/pdf":
        sections, pages = _pdf(filename, content), None
        pages = max((s.page or 0) for s in sections) if sections else 0
    elif media == "text/html":
        sections, pages = [Section(None, _html(filename, content))], None
    elif media.endswith("wordprocessingml.document"):
        sections, pages = [Section(None, _docx(filename, content))], None
    else:
        sections, pages = [Section(None, normalise(_decode_text(filename, content)))], None
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise DocumentError(f"{filename}: no text found in the file")
    return ParsedDocument(filename=filename, media_type=media, sections=sections, pages=pages)


def normalise(text: str) -> str:
    """Runs of spaces to one, at most one blank line in a row, no control characters."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _decode_text(filename: str, content: bytes) -> str:
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return content.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(f"{filename}: the text is not valid UTF-16") from exc
    head = content[:8192]
    if b"\x00" in head:
        raise DocumentError(
            f"{filename}: this is a binary file, not text (was it renamed to "
            f"{PurePosixPath(filename).suffix}?)"
        )
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _decode_legacy(filename, content)
    controls = sum(1 for c in text[:8192] if ord(c) < 32 and c not in "\t\n\r\f")
    if controls > max(8, len(text[:8192]) // 50):
        raise DocumentError(f"{filename}: this is a binary file, not text")
    return text


def _decode_legacy(filename: str, content: bytes) -> str:
    """Not UTF-8: detect the encoding on longer texts (reliable there), else Windows-1252,
    the most common legacy encoding, which maps every byte."""
    if len(content) >= LEGACY_DETECT_MIN_BYTES:
        from charset_normalizer import from_bytes

        best = from_bytes(content).best()
        if best is not None:
            return str(best)
    try:
        return content.decode("cp1252")
    except UnicodeDecodeError:
        raise DocumentError(
            f"{filename}: the content is not text in any encoding we recognise"
        ) from None


def _pdf(filename: str, content: bytes) -> list[Section]:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    if b"%PDF" not in content[:1024]:
        raise DocumentError(f"{filename}: not a PDF file (no PDF header); is the extension wrong?")
    try:
        reader = PdfReader(io.BytesIO(content), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")  # an empty user password opens many "protected" PDFs
            except Exception:
                opened = 0
            if not opened:
                raise DocumentError(
                    f"{filename}: the PDF is encrypted with a password; remove the password "
                    "and upload it again"
                )
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = normalise(page.extract_text() or "")
            sections.append(Section(number, text))
    except DocumentError:
        raise
    except FileNotDecryptedError as exc:
        raise DocumentError(
            f"{filename}: the PDF is encrypted with a password; remove the password and "
            "upload it again"
        ) from exc
    except (PdfReadError, Exception) as exc:
        log.info("unreadable PDF %s: %s", filename, exc)
        raise DocumentError(
            f"{filename}: the PDF is damaged or truncated and cannot be read ({_short(exc)})"
        ) from exc
    if not sections:
        raise DocumentError(f"{filename}: the PDF has no pages")
    if not any(s.text for s in sections):
        raise DocumentError(
            f"{filename}: the PDF has no text layer (a scanned document?); run OCR on it "
            "and upload the result"
        )
    return sections


def _html(filename: str, content: bytes) -> str:
    import trafilatura

    markup = _decode_text(filename, content)
    try:
        main = trafilatura.extract(
            markup, include_comments=False, include_tables=True, favor_recall=True
        )
    except Exception as exc:  # trafilatura is lenient; a crash means unparseable markup
        log.info("trafilatura failed on %s: %s", filename, exc)
        main = None
    if main and main.strip():
        return normalise(main)
    # Small pages fall below trafilatura's thresholds: take the visible text instead.
    try:
        from lxml import html as lxml_html
        from lxml_html_clean import Cleaner

        tree = lxml_html.fromstring(markup)
        tree = Cleaner(scripts=True, javascript=True, style=True, comments=True).clean_html(tree)
        return normalise(tree.text_content())
    except Exception as exc:
        raise DocumentError(f"{filename}: the HTML cannot be read ({_short(exc)})") from exc


def _docx(filename: str, content: bytes) -> str:
    import docx

    if not content.startswith(b"PK"):
        raise DocumentError(
            f"{filename}: not a DOCX file (not a zip archive); is the extension wrong?"
        )
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            names = archive.namelist()
            inflated = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as exc:
        raise DocumentError(f"{filename}: the DOCX is damaged and cannot be read") from exc
    if "word/document.xml" not in names:
        raise DocumentError(f"{filename}: not a Word document (no word/document.xml inside)")
    if inflated > MAX_INFLATION * max(len(content), 1024 * 1024):
        raise DocumentError(f"{filename}: the DOCX unpacks to {inflated / 1e6:.0f} MB; refused")
    try:
        document = docx.Document(io.BytesIO(content))
    except Exception as exc:
        raise DocumentError(
            f"{filename}: the DOCX is damaged and cannot be read ({_short(exc)})"
        ) from exc
    parts = [p.text for p in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return normalise("\n\n".join(p for p in parts if p.strip()))


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
