"""CHARX: a zip holding ``card.json`` and its assets (avatar, images) addressed as ``embeded://``.

Archives come from strangers, so entries are counted from the end-of-central-directory record
before ``zipfile`` parses anything, paths are normalised and refused if they could escape, and
what an archive unpacks to is capped.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zipfile
import zlib

from agents.cards.json_format import card_to_json, parse_card_json
from agents.schema import Card
from core.errors import (
    CardFormatError,
    UnsafePathError,
    UploadTooLargeError,
)

# A CHARX is a card plus its images; more files than this is an attack on the file system.
MAX_CHARX_ENTRIES = 1_000


_CHARX_CARD = "card.json"


_EMBEDDED_PREFIXES = ("embeded://", "embedded://")  # the spec's spelling first


# Fixed timestamp so that writing the same card twice gives byte-identical archives.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def _safe_archive_path(name: str) -> str:
    """The normalised form of an archive path, or UnsafePathError if it could escape.

    Rejects absolute paths, drive letters, backslashes (a Windows separator that would
    hide ``..\\``) and ``..`` segments; drops ``.`` and empty segments.
    """
    if "\\" in name:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} contains a backslash")
    if name.startswith("/"):
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} is absolute")
    if re.match(r"^[A-Za-z]:", name):
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} has a drive letter")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r} contains '..'")
    if "\0" in name or not parts:
        raise UnsafePathError(f"unsafe path in CHARX archive: {name!r}")
    return "/".join(parts)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = info.external_attr >> 16
    return (mode & 0o170000) == 0o120000


def zip_entry_count(data: bytes) -> int | None:
    """How many entries a zip's end-of-central-directory record declares (None if unknown).

    Read before ``zipfile`` parses the central directory, which builds one object per entry:
    an archive of 100,000 tiny files is refused without that work.
    """
    end = data.rfind(b"PK\x05\x06", max(0, len(data) - 65_557))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack("<H", data[end + 10 : end + 12])
    if count != 0xFFFF:
        return count
    locator = end - 20  # ZIP64: the locator sits right before the classic record
    if locator < 0 or data[locator : locator + 4] != b"PK\x06\x07":
        return None
    (offset,) = struct.unpack("<Q", data[locator + 8 : locator + 16])
    if data[offset : offset + 4] != b"PK\x06\x06":
        return None
    (count64,) = struct.unpack("<Q", data[offset + 32 : offset + 40])
    return count64


def read_charx(
    data: bytes, max_total_bytes: int, max_entries: int = MAX_CHARX_ENTRIES
) -> tuple[Card, dict[str, bytes]]:
    """Read a CHARX archive: ``card.json`` at the root plus asset files.

    Returns the card and every other file keyed by its normalised path (for example
    ``assets/icon/images/main.png``), so that exporting writes them all back. Every entry
    is checked before anything is read: one unsafe name or symlink rejects the archive.
    The declared sizes must add up to at most ``max_total_bytes``, and the bytes actually
    inflated are counted too, so an archive that lies in its headers is still stopped. At
    most ``max_entries`` entries are accepted, counted before the archive is parsed.
    """
    declared_entries = zip_entry_count(data)
    if declared_entries is not None and declared_entries > max_entries:
        raise UploadTooLargeError(
            f"CHARX archive has {declared_entries:,} entries; at most {max_entries:,} are "
            "accepted (a card and its images)"
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as exc:
        raise CardFormatError(f"not a valid CHARX (zip) archive: {exc}") from exc
    with archive:
        if len(archive.infolist()) > max_entries:  # the record above lied
            raise UploadTooLargeError(
                f"CHARX archive has more than {max_entries:,} entries (a card and its images)"
            )
        entries: dict[str, zipfile.ZipInfo] = {}
        for info in archive.infolist():
            path = _safe_archive_path(info.filename)
            if _is_symlink(info):
                raise UnsafePathError(
                    f"unsafe path in CHARX archive: {info.filename!r} is a symbolic link"
                )
            if info.is_dir():
                continue
            if path in entries:
                raise CardFormatError(f"CHARX archive has two entries named {path!r}")
            entries[path] = info
        declared = sum(info.file_size for info in entries.values())
        if declared > max_total_bytes:
            raise UploadTooLargeError(
                f"CHARX archive unpacks to {declared} bytes, more than the limit of "
                f"{max_total_bytes} bytes"
            )
        if _CHARX_CARD not in entries:
            raise CardFormatError("CHARX archive has no card.json at its root")
        files: dict[str, bytes] = {}
        budget = max_total_bytes
        for path, info in entries.items():
            files[path] = _read_entry(archive, info, budget, max_total_bytes)
            budget -= len(files[path])
    card = parse_card_json(files.pop(_CHARX_CARD))
    return card, files


def _read_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: int, limit: int) -> bytes:
    try:
        with archive.open(info) as handle:
            content = handle.read(budget + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise CardFormatError(f"CHARX entry {info.filename!r} is corrupt: {exc}") from exc
    except (RuntimeError, NotImplementedError) as exc:  # encrypted / unknown compression
        raise CardFormatError(f"CHARX entry {info.filename!r} cannot be read: {exc}") from exc
    if len(content) > budget:
        raise UploadTooLargeError(f"CHARX archive unpacks to more than the limit of {limit} bytes")
    return content


def write_charx(card: Card, assets: dict[str, bytes]) -> bytes:
    """A CHARX archive: ``card.json`` (V3) first, then each asset at its path.

    Entries get a fixed timestamp so the same card and assets always give the same bytes.
    An asset named ``card.json`` is ignored: the card itself is the one to write there.
    """
    card_json = json.dumps(card_to_json(card, "v3"), ensure_ascii=False, indent=2)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        _write_entry(archive, _CHARX_CARD, card_json.encode("utf-8"))
        written = {_CHARX_CARD}
        for name, content in assets.items():
            path = _safe_archive_path(name)
            if path in written:
                continue
            _write_entry(archive, path, content)
            written.add(path)
    return out.getvalue()


def _write_entry(archive: zipfile.ZipFile, path: str, content: bytes) -> None:
    info = zipfile.ZipInfo(path, date_time=_ZIP_EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o100644 << 16  # a regular file, rw-r--r--
    archive.writestr(info, content)


def write_asset_archive(assets: dict[str, bytes]) -> bytes:
    """All of a card's asset files in one uncompressed zip, the way an agent stores them.

    One file per agent rather than one per asset: an import then costs one fsync however
    many images the card brings. Stored, not deflated: the assets are mostly PNG/JPEG/WebP,
    already compressed. Paths are checked as for CHARX entries.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(assets):
            info = zipfile.ZipInfo(_safe_archive_path(name), date_time=_ZIP_EPOCH)
            info.external_attr = 0o100644 << 16
            archive.writestr(info, assets[name])
    return out.getvalue()


def read_asset_archive(blob: bytes) -> dict[str, bytes]:
    """The files of :func:`write_asset_archive`, keyed by path."""
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        return {
            _safe_archive_path(info.filename): archive.read(info)
            for info in archive.infolist()
            if not info.is_dir()
        }


def embedded_asset_path(uri: str) -> str | None:
    """The archive path an ``embeded://`` (or ``embedded://``) asset URI points to.

    None for other URIs (``ccdefault:``, http(s), data URIs); UnsafePathError if the path
    could escape the archive.
    """
    for prefix in _EMBEDDED_PREFIXES:
        if uri.startswith(prefix):
            return _safe_archive_path(uri[len(prefix) :])
    return None


def main_icon(card: Card, assets: dict[str, bytes]) -> bytes | None:
    """The bytes of the card's main icon from a CHARX, to use as the avatar.

    The V3 spec marks it as the ``icon`` asset named ``main``; failing that the first
    embedded icon is used. None if the card has no embedded icon.
    """
    icons = [a for a in card.data.assets or [] if a.type == "icon"]
    icons.sort(key=lambda a: a.name != "main")  # stable: "main" first, then card order
    for icon in icons:
        try:
            path = embedded_asset_path(icon.uri)
        except UnsafePathError:
            continue
        if path is not None and path in assets:
            return assets[path]
    return None
