"""Card import/export: every card here is built by the test itself (no downloaded fixtures).

PNG cards are assembled with an independent chunk writer (below), not with the module under
test, so that reading is checked against the PNG format rather than against our own writer.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import struct
import zipfile
import zlib
from typing import Any

import pytest
from PIL import Image

from agents.cards import (
    DEFAULT_AVATAR_SIZE,
    ImportedCard,
    canonical_json,
    card_to_json,
    content_hash,
    detect_format,
    embedded_asset_path,
    main_icon,
    parse_card_json,
    read_card_file,
    read_charx,
    read_png_card,
    write_charx,
    write_png_card,
)
from agents.schema import SPEC_V2, SPEC_V3, Card, CardData
from core.errors import CardFormatError, UnsafePathError, UploadTooLargeError

PNG_SIG = b"\x89PNG\r\n\x1a\n"
MB = 1024 * 1024


# --------------------------------------------------------------------------- helpers


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body))


def split_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        out.append((png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return out


def text_chunks(png: bytes) -> dict[str, list[bytes]]:
    found: dict[str, list[bytes]] = {}
    for ctype, body in split_chunks(png):
        if ctype == b"tEXt":
            key, _, value = body.partition(b"\0")
            found.setdefault(key.decode(), []).append(value)
    return found


def make_image(size: tuple[int, int] = (48, 72), fmt: str = "PNG") -> bytes:
    """A small RGBA gradient, so that pixel comparisons mean something."""
    im = Image.new("RGBA", size)
    im.putdata(
        [
            (x * 5 % 256, y * 3 % 256, (x * y) % 256, 200)
            for y in range(size[1])
            for x in range(size[0])
        ]
    )
    if fmt != "PNG":
        im = im.convert("RGB")
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


def add_text(png: bytes, *extra_chunks: bytes) -> bytes:
    """Insert chunks right before IEND (the last 12 bytes of a Pillow-written PNG)."""
    assert png[-12:] == chunk(b"IEND", b"")
    return png[:-12] + b"".join(extra_chunks) + png[-12:]


def b64json(obj: dict[str, Any]) -> bytes:
    return base64.b64encode(json.dumps(obj).encode("utf-8"))


def pixels(png: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(png)) as im:
        return im.mode, im.size, im.tobytes()


def is_subset(small: Any, big: Any) -> bool:
    """Every key of ``small`` is in ``big`` with an equal value (recursively), lists equal."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(
            k in big and is_subset(v, big[k]) for k, v in small.items()
        )
    if isinstance(small, list):
        return (
            isinstance(big, list)
            and len(small) == len(big)
            and all(is_subset(a, b) for a, b in zip(small, big, strict=True))
        )
    return small == big and type(small) is type(big)


def make_zip(entries: dict[str, bytes], symlinks: tuple[str, ...] = ()) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in symlinks:
                info.external_attr = 0o120777 << 16
            zf.writestr(info, content)
    return out.getvalue()


# --------------------------------------------------------------------------- sample cards


def v2_card_dict() -> dict[str, Any]:
    """A SillyTavern-style V2 card: lorebook, unknown extension keys, V1 mirrors."""
    data = {
        "name": "Seraphina",
        "description": "A guardian of the forest. ✨ 森",
        "personality": "kind, protective",
        "scenario": "{{user}} wakes up in a glade.",
        "first_mes": "*She smiles.* You're awake.",
        "mes_example": "<START>\n{{char}}: Rest now.",
        "creator_notes": "Works best with long replies.",
        "system_prompt": "",
        "post_history_instructions": "Stay in character.",
        "alternate_greetings": ["Hello, traveller.", "The forest is quiet today."],
        "tags": ["fantasy", "female"],
        "creator": "tester",
        "character_version": "1.2",
        "extensions": {
            "talkativeness": "0.5",
            "fav": False,
            "world": "Eldoria",
            "depth_prompt": {"prompt": "Seraphina is calm.", "depth": 4, "role": "system"},
            "my_tool": {"x": 1, "nested": [1, 2.5, None, {"deep": True}]},
        },
        "character_book": {
            "name": "Eldoria lore",
            "scan_depth": 3,
            "token_budget": 512,
            "recursive_scanning": False,
            "extensions": {"book_ext": "kept"},
            "entries": [
                {
                    "keys": ["forest", "glade"],
                    "content": "The forest is ancient.",
                    "extensions": {"position": 0, "depth": 4, "probability": 100, "weird": [1]},
                    "enabled": True,
                    "insertion_order": 100,
                    "case_sensitive": False,
                    "name": "Forest",
                    "priority": 10,
                    "id": 0,
                    "comment": "forest entry",
                    "selective": True,
                    "secondary_keys": ["trees"],
                    "constant": False,
                    "position": "before_char",
                },
                {
                    "keys": [],
                    "content": "Magic always has a price.",
                    "extensions": {},
                    "enabled": True,
                    "insertion_order": 5,
                    "constant": True,
                    "id": "magic-rule",
                    "position": "after_char",
                    "entry_level_unknown": {"keep": "me"},
                },
                {
                    "keys": ["shadow"],
                    "content": "Shadows lurk.",
                    "extensions": {},
                    "enabled": False,
                    "insertion_order": 1,
                    "selective": False,
                    "secondary_keys": [],
                },
            ],
        },
        "unknown_data_key": {"future": "field"},
    }
    top = {key: data[key] for key in ("name", "description", "personality", "scenario")}
    top |= {"first_mes": data["first_mes"], "mes_example": data["mes_example"]}
    return {
        **top,
        "avatar": "none",
        "talkativeness": "0.5",
        "fav": False,
        "tags": data["tags"],
        "creatorcomment": data["creator_notes"],
        "create_date": "2024-5-1 @12h 00m 00s 000ms",
        "spec": SPEC_V2,
        "spec_version": "2.0",
        "data": data,
    }


def v3_card_dict() -> dict[str, Any]:
    """A complete V3 card (every required field present) with every V3 addition."""
    return {
        "spec": SPEC_V3,
        "spec_version": "3.0",
        "data": {
            "name": "Kael",
            "description": "A wandering bard.",
            "personality": "witty",
            "scenario": "A tavern at dusk.",
            "first_mes": "Another song?",
            "mes_example": "",
            "creator_notes": "English notes",
            "system_prompt": "You are Kael.",
            "post_history_instructions": "",
            "alternate_greetings": ["Hail!"],
            "group_only_greetings": ["Greetings, all of you."],
            "tags": ["bard"],
            "creator": "tester",
            "character_version": "3",
            "extensions": {"risu_x": {"a": [1, 2]}},
            "nickname": "Kae",
            "source": ["https://example.invalid/kael", "urn:uuid:1234"],
            "creation_date": 1714560000,
            "modification_date": 1714563600,
            "creator_notes_multilingual": {"en": "English notes", "fr": "Notes en français"},
            "assets": [
                {
                    "type": "icon",
                    "uri": "embeded://assets/icon/images/main.png",
                    "name": "main",
                    "ext": "png",
                },
                {"type": "background", "uri": "ccdefault:", "name": "bg", "ext": "png"},
                {
                    "type": "emotion",
                    "uri": "embedded://assets/emotion/images/happy.png",
                    "name": "happy",
                    "ext": "png",
                    "asset_unknown": 7,
                },
            ],
            "character_book": {
                "extensions": {},
                "entries": [
                    {
                        "keys": ["lute"],
                        "content": "Kael's lute is cursed.",
                        "extensions": {},
                        "enabled": True,
                        "insertion_order": 0,
                        "use_regex": True,
                        "constant": False,
                    }
                ],
            },
        },
        "x_top_level": {"kept": True},
    }


# --------------------------------------------------------------------------- detect_format


def test_detect_format_by_magic_bytes_not_name() -> None:
    assert detect_format("card.json", make_image()[:32]) == "png"
    assert detect_format("card.png", make_zip({"card.json": b"{}"})[:32]) == "charx"
    assert detect_format(None, b'\xef\xbb\xbf \n\t{"spec": 1}') == "json"
    assert detect_format("x.json", '{"a": 1}'.encode("utf-16")) == "json"
    with pytest.raises(CardFormatError, match=r"unsupported file type: 'photo.png'"):
        detect_format("photo.png", b"\xff\xd8\xff\xe0 JFIF")
    with pytest.raises(CardFormatError, match="unsupported file type"):
        detect_format(None, b"[1, 2]")
    with pytest.raises(CardFormatError, match="unsupported file type"):
        detect_format(None, b"")


# --------------------------------------------------------------------------- PNG


def test_v2_png_with_lorebook_round_trips_losslessly() -> None:
    original = v2_card_dict()
    image = make_image()
    png = add_text(image, chunk(b"tEXt", b"chara\0" + b64json(original)))

    card, avatar = read_png_card(png)
    assert avatar == png
    assert card.spec == SPEC_V2
    assert card.data.name == "Seraphina"
    book = card.data.character_book
    assert book is not None and len(book.entries) == 3
    assert book.entries[0].secondary_keys == ["trees"]
    assert book.entries[0].selective is True
    assert book.entries[1].constant is True
    assert book.entries[1].model_extra == {"entry_level_unknown": {"keep": "me"}}
    assert card.data.extensions["my_tool"] == {"x": 1, "nested": [1, 2.5, None, {"deep": True}]}
    assert card.data.model_extra == {"unknown_data_key": {"future": "field"}}
    assert card.extra["create_date"] == original["create_date"]

    written = write_png_card(card, avatar)
    chunks = text_chunks(written)
    assert len(chunks["chara"]) == 1 and len(chunks["ccv3"]) == 1
    chara = json.loads(base64.b64decode(chunks["chara"][0]))
    ccv3 = json.loads(base64.b64decode(chunks["ccv3"][0]))
    assert (chara["spec"], chara["spec_version"]) == (SPEC_V2, "2.0")
    assert (ccv3["spec"], ccv3["spec_version"]) == (SPEC_V3, "3.0")
    # The card chunks sit right before IEND, as SillyTavern writes them.
    assert [t for t, _ in split_chunks(written)][-3:] == [b"tEXt", b"tEXt", b"IEND"]

    again, _ = read_png_card(written)
    assert again.spec == SPEC_V3  # ccv3 is preferred
    # The V3 chunk is the V3 conversion: V3's required fields are filled in there only.
    assert again.data.dump() == card_to_json(card, "v3")["data"]
    assert again.extra == card.extra
    # The V2 chunk gives back exactly the data the V2 card came with.
    assert chara["data"] == original["data"]
    # Nothing the original file carried was lost (only spec defaults may be added).
    assert is_subset(original, chara)
    assert is_subset(original["data"], ccv3["data"])
    # Pixels, and the image data itself, are untouched.
    assert pixels(written) == pixels(image)
    assert [b for t, b in split_chunks(written) if t == b"IDAT"] == [
        b for t, b in split_chunks(image) if t == b"IDAT"
    ]


def test_write_png_replaces_old_card_chunks_and_is_stable() -> None:
    card = parse_card_json(v2_card_dict())
    first = write_png_card(card, make_image())
    renamed = card.model_copy(deep=True)
    renamed.data.name = "Renamed"
    second = write_png_card(renamed, first)
    chunks = text_chunks(second)
    assert len(chunks["chara"]) == 1 and len(chunks["ccv3"]) == 1
    back, _ = read_png_card(second)
    assert back.data.name == "Renamed"
    assert back.extra["name"] == "Renamed"  # the V1 mirror follows data
    assert write_png_card(card, make_image()) == first  # deterministic


def test_ccv3_is_preferred_and_itxt_ztxt_are_read() -> None:
    v2 = v2_card_dict()
    v3 = v3_card_dict()
    both = add_text(
        make_image(),
        chunk(b"tEXt", b"chara\0" + b64json(v2)),
        chunk(b"tEXt", b"ccv3\0" + b64json(v3)),
    )
    assert read_png_card(both)[0].data.name == "Kael"

    itxt = chunk(b"iTXt", b"ccv3\0\x01\x00\0\0" + zlib.compress(b64json(v3)))
    assert read_png_card(add_text(make_image(), itxt))[0].data.name == "Kael"

    ztxt = chunk(b"zTXt", b"chara\0\x00" + zlib.compress(b64json(v2)))
    assert read_png_card(add_text(make_image(), ztxt))[0].data.name == "Seraphina"


def test_broken_ccv3_falls_back_to_chara() -> None:
    png = add_text(
        make_image(),
        chunk(b"tEXt", b"chara\0" + b64json(v2_card_dict())),
        chunk(b"tEXt", b"ccv3\0!!!not base64!!!"),
    )
    assert read_png_card(png)[0].data.name == "Seraphina"
    only_bad = add_text(make_image(), chunk(b"tEXt", b"ccv3\0!!!not base64!!!"))
    with pytest.raises(CardFormatError, match="'ccv3' chunk is not valid base64"):
        read_png_card(only_bad)


def test_write_png_without_image_renders_default_avatar() -> None:
    card = Card(data=CardData(name="nova"))
    png = write_png_card(card, None)
    _mode, size, _ = pixels(png)
    assert size == DEFAULT_AVATAR_SIZE
    back, _ = read_png_card(png)
    assert back.data.name == "nova"
    # Not-an-image bytes get the same default avatar.
    assert pixels(write_png_card(card, b"definitely not an image")) == pixels(png)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_write_png_converts_other_formats(fmt: str) -> None:
    source = make_image((30, 40), fmt=fmt)
    png = write_png_card(parse_card_json(v3_card_dict()), source)
    assert png.startswith(PNG_SIG)
    with Image.open(io.BytesIO(source)) as im:
        expected = im.convert("RGB").tobytes()
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size == (30, 40)
        assert im.convert("RGB").tobytes() == expected
    assert read_png_card(png)[0].data.nickname == "Kae"


def test_bad_png_inputs() -> None:
    good = add_text(make_image(), chunk(b"tEXt", b"chara\0" + b64json(v2_card_dict())))

    with pytest.raises(CardFormatError, match="PNG is truncated"):
        read_png_card(good[: len(good) // 2])
    with pytest.raises(CardFormatError, match="PNG is truncated"):
        read_png_card(good[:-12])  # no IEND

    corrupt = bytearray(good)
    idat_at = good.index(b"IDAT")
    corrupt[idat_at + 10] ^= 0xFF
    with pytest.raises(CardFormatError, match="'IDAT' has a bad CRC"):
        read_png_card(bytes(corrupt))

    # Chunks well formed (CRCs recomputed) but the compressed pixels cut short.
    chunks = split_chunks(make_image())
    rebuilt = PNG_SIG + b"".join(
        chunk(t, b[: len(b) // 3] if t == b"IDAT" else b) for t, b in chunks
    )
    with pytest.raises(CardFormatError, match="cannot be decoded"):
        read_png_card(add_text(rebuilt, chunk(b"tEXt", b"chara\0" + b64json(v2_card_dict()))))

    with pytest.raises(
        CardFormatError,
        match=r"PNG has no character card \(no 'chara' or 'ccv3' text chunk\)",
    ):
        read_png_card(add_text(make_image(), chunk(b"tEXt", b"Software\0Pillow")))

    with pytest.raises(CardFormatError, match="not a PNG"):
        read_png_card(bytes(range(256)) * 4)


# --------------------------------------------------------------------------- JSON


def test_v3_json_round_trip_is_exact() -> None:
    original = v3_card_dict()
    text = json.dumps(original, ensure_ascii=False, indent=1)
    card = parse_card_json(text.encode("utf-8"))
    assert card.spec == SPEC_V3
    assert card.data.nickname == "Kae"
    assert card.data.group_only_greetings == ["Greetings, all of you."]
    assert card.data.creation_date == 1714560000
    assert card.data.creator_notes_multilingual == {
        "en": "English notes",
        "fr": "Notes en français",
    }
    assert card.data.assets is not None
    assert card.data.assets[0].uri == "embeded://assets/icon/images/main.png"
    assert card.extra == {"x_top_level": {"kept": True}}

    exported = card_to_json(card, "v3")
    assert exported == original
    again = parse_card_json(json.dumps(exported))
    assert again == card
    assert again.data.dump() == card.data.dump()
    # Input is not mutated and exports do not share state with the card.
    assert original == v3_card_dict()
    exported["data"]["extensions"]["risu_x"]["a"].append(3)
    exported["x_top_level"]["kept"] = False
    assert card_to_json(card, "v3") == original


def test_v2_export_fills_defaults_and_keeps_v3_keys() -> None:
    card = parse_card_json(v3_card_dict())
    v2 = card_to_json(card, "v2")
    assert (v2["spec"], v2["spec_version"]) == (SPEC_V2, "2.0")
    assert v2["data"]["nickname"] == "Kae"  # lossless beats strict V2
    minimal = Card(data=CardData(name="Min"))
    data = card_to_json(minimal, "v2")["data"]
    for key in (
        "description",
        "personality",
        "scenario",
        "first_mes",
        "mes_example",
        "creator_notes",
        "system_prompt",
        "post_history_instructions",
        "creator",
        "character_version",
    ):
        assert data[key] == ""
    assert data["alternate_greetings"] == [] and data["tags"] == [] and data["extensions"] == {}
    assert card_to_json(minimal, "v3")["data"]["group_only_greetings"] == []
    # A V2 card exported as V2 gets nothing added (it comes back as it was imported).
    minimal_v2 = Card(spec=SPEC_V2, spec_version="2.0", data=CardData(name="Min"))
    assert card_to_json(minimal_v2, "v3")["data"]["group_only_greetings"] == []
    assert card_to_json(minimal_v2, "v2")["data"] == {"name": "Min"}


def test_mirrors_are_refreshed_from_data() -> None:
    card = parse_card_json(v2_card_dict())
    card.data.description = "Changed."
    card.data.tags = ["new"]
    card.data.extensions["talkativeness"] = "0.9"
    out = card_to_json(card, "v2")
    assert out["description"] == "Changed."
    assert out["tags"] == ["new"]
    assert out["talkativeness"] == "0.9"
    assert out["create_date"] == v2_card_dict()["create_date"]  # not a mirror: unchanged


def test_v1_flat_card_is_upgraded() -> None:
    v1 = {
        "name": "Old Timer",
        "description": "From 2023.",
        "personality": "grumpy",
        "scenario": "A porch.",
        "first_mes": "Get off my lawn.",
        "mes_example": "",
        "avatar": "none",
        "chat": "Old Timer - 2023-1-1",
        "tags": ["classic"],
        "creatorcomment": "v1 notes",
    }
    card = parse_card_json(json.dumps(v1))
    assert (card.spec, card.spec_version) == (SPEC_V2, "2.0")
    assert card.data.name == "Old Timer"
    assert card.data.first_mes == "Get off my lawn."
    assert card.data.tags == ["classic"]
    assert card.data.creator_notes == "v1 notes"
    assert card.extra == {
        "avatar": "none",
        "chat": "Old Timer - 2023-1-1",
        "tags": ["classic"],
        "creatorcomment": "v1 notes",
    }
    out = card_to_json(card, "v2")
    assert out["spec"] == SPEC_V2 and out["data"]["personality"] == "grumpy"
    assert out["avatar"] == "none" and out["tags"] == ["classic"]
    assert parse_card_json(out).data.dump() == card.data.dump()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2, 3]", "must be an object, not list"),
        (b"\xff\xfe\xfa", "not valid"),
        ({"spec": SPEC_V2, "spec_version": "2.0"}, "no 'data' object"),
        ({"spec": SPEC_V2, "data": "text"}, "'data' must be an object"),
        ({"spec": "chara_card_v9", "data": {"name": "x"}}, "unsupported card spec"),
        ({"spec": SPEC_V2, "data": {"description": "no name"}}, "'data.name' is required"),
        ({"spec": SPEC_V3, "data": {"name": ""}}, "'data.name' must not be empty"),
        ({"spec": SPEC_V2, "data": {"name": "x", "tags": "a,b"}}, "'data.tags': .*valid list"),
        (
            {
                "spec": SPEC_V2,
                "data": {"name": "x", "character_book": {"entries": [{"keys": "k"}]}},
            },
            r"'data.character_book.entries\[0\].keys'",
        ),
        ({"description": "flat but nameless"}, "neither a V2/V3 card nor a V1 card"),
    ],
)
def test_bad_json_cards(raw: Any, message: str) -> None:
    with pytest.raises(CardFormatError, match=message):
        parse_card_json(raw)


# --------------------------------------------------------------------------- CHARX


def test_charx_round_trip() -> None:
    icon = make_image((16, 16))
    happy = make_image((8, 8))
    meta = b'{"x_meta": true}'
    archive = make_zip(
        {
            "card.json": json.dumps(v3_card_dict()).encode(),
            "assets/icon/images/main.png": icon,
            "assets/emotion/images/happy.png": happy,
            "x_meta/1.json": meta,
            "assets/": b"",  # a directory entry
        }
    )
    card, assets = read_charx(archive, max_total_bytes=MB)
    assert assets == {
        "assets/icon/images/main.png": icon,
        "assets/emotion/images/happy.png": happy,
        "x_meta/1.json": meta,
    }
    assert card.data.assets is not None
    assert [a.uri for a in card.data.assets] == [
        "embeded://assets/icon/images/main.png",
        "ccdefault:",
        "embedded://assets/emotion/images/happy.png",
    ]
    assert main_icon(card, assets) == icon

    written = write_charx(card, assets)
    assert write_charx(card, assets) == written  # reproducible bytes
    with zipfile.ZipFile(io.BytesIO(written)) as zf:
        assert zf.namelist()[0] == "card.json"
    card2, assets2 = read_charx(written, max_total_bytes=MB)
    assert card2.data.dump() == card.data.dump()
    assert card2.extra == card.extra
    assert card_to_json(card2, "v3") == v3_card_dict()
    assert assets2 == assets


def test_embedded_asset_paths() -> None:
    assert embedded_asset_path("embeded://assets/icon/images/main.png") == (
        "assets/icon/images/main.png"
    )
    assert embedded_asset_path("embedded://./assets//x.png") == "assets/x.png"
    assert embedded_asset_path("ccdefault:") is None
    assert embedded_asset_path("https://example.invalid/a.png") is None
    with pytest.raises(UnsafePathError):
        embedded_asset_path("embeded://../../etc/passwd")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../evil.txt", r"contains '\.\.'"),
        ("assets/../../evil.txt", r"contains '\.\.'"),
        ("/abs.txt", "is absolute"),
        ("C:\\x", "backslash"),
        ("C:/x", "drive letter"),
        ("assets\\..\\evil.txt", "backslash"),
    ],
)
def test_charx_rejects_unsafe_paths(name: str, message: str) -> None:
    archive = make_zip({"card.json": json.dumps(v3_card_dict()).encode(), name: b"evil"})
    with pytest.raises(UnsafePathError, match=message):
        read_charx(archive, max_total_bytes=MB)
    with pytest.raises(UnsafePathError):
        write_charx(parse_card_json(v3_card_dict()), {name: b"evil"})


def test_charx_rejects_symlinks() -> None:
    archive = make_zip(
        {"card.json": json.dumps(v3_card_dict()).encode(), "assets/link": b"/etc/passwd"},
        symlinks=("assets/link",),
    )
    with pytest.raises(UnsafePathError, match="symbolic link"):
        read_charx(archive, max_total_bytes=MB)


def test_charx_bad_archives() -> None:
    with pytest.raises(CardFormatError, match=r"no card\.json at its root"):
        read_charx(make_zip({"sub/card.json": b"{}", "a.png": b"x"}), max_total_bytes=MB)
    with pytest.raises(CardFormatError, match="not a valid CHARX"):
        read_charx(b"PK\x03\x04 this is not really a zip", max_total_bytes=MB)
    with pytest.raises(CardFormatError, match="not valid JSON"):
        read_charx(make_zip({"card.json": b"{oops"}), max_total_bytes=MB)

    # A damaged entry (compressed bytes flipped) fails its CRC or inflation.
    good = make_zip({"card.json": json.dumps(v3_card_dict()).encode()})
    damaged = bytearray(good)
    damaged[40] ^= 0xFF
    with pytest.raises(CardFormatError):
        read_charx(bytes(damaged), max_total_bytes=MB)


def test_charx_zip_bomb_is_stopped() -> None:
    bomb = make_zip(
        {"card.json": json.dumps(v3_card_dict()).encode(), "assets/zeros.bin": bytes(5 * MB)}
    )
    assert len(bomb) < 64 * 1024  # small on the wire
    with pytest.raises(UploadTooLargeError, match="more than the limit of 1048576 bytes"):
        read_charx(bomb, max_total_bytes=MB)
    assert read_charx(bomb, max_total_bytes=6 * MB)[1]["assets/zeros.bin"] == bytes(5 * MB)


# --------------------------------------------------------------------------- any file


def test_read_card_file_dispatches_on_content() -> None:
    png = write_png_card(parse_card_json(v2_card_dict()), make_image())
    got = read_card_file("renamed.json", png, MB)
    assert isinstance(got, ImportedCard)
    assert (got.format, got.avatar, got.assets) == ("png", png, {})

    icon = make_image((16, 16))
    charx = write_charx(parse_card_json(v3_card_dict()), {"assets/icon/images/main.png": icon})
    got = read_card_file("kael.charx", charx, MB)
    assert got.format == "charx" and got.avatar == icon

    got = read_card_file("kael.json", json.dumps(v3_card_dict()).encode(), MB)
    assert got.format == "json" and got.avatar is None and got.card.data.name == "Kael"

    with pytest.raises(UploadTooLargeError):
        read_card_file("big.png", png, len(png) - 1)


# --------------------------------------------------------------------------- hashing


def test_content_hash_is_stable_and_sensitive() -> None:
    original = v3_card_dict()
    shuffled = json.loads(json.dumps(original))
    shuffled["data"] = dict(reversed(list(shuffled["data"].items())))
    shuffled = dict(reversed(list(shuffled.items())))

    first = content_hash(parse_card_json(original))
    assert first.startswith("0x") and len(first) == 66
    int(first, 16)
    assert content_hash(parse_card_json(original)) == first
    assert content_hash(parse_card_json(shuffled)) == first

    changed = copy.deepcopy(original)
    changed["data"]["extensions"]["risu_x"]["a"] = [1, 3]
    assert content_hash(parse_card_json(changed)) != first
    renamed = parse_card_json(original)
    renamed.data.name = "Kael II"
    assert content_hash(renamed) != first

    # Same card from PNG, CHARX and JSON: same hash.
    card = parse_card_json(original)
    from_png, _ = read_png_card(write_png_card(card, None))
    from_charx, _ = read_charx(write_charx(card, {}), MB)
    assert content_hash(from_png) == content_hash(from_charx) == first


def test_canonical_json_is_sorted_compact_utf8() -> None:
    raw = canonical_json(parse_card_json(v3_card_dict()))
    text = raw.decode("utf-8")
    assert "français" in text  # not \u-escaped
    obj = json.loads(raw)
    assert json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False) == text


def test_charx_lying_size_header_does_not_bypass_the_limit() -> None:
    bomb = bytearray(
        make_zip(
            {"card.json": json.dumps(v3_card_dict()).encode(), "assets/zeros.bin": bytes(5 * MB)}
        )
    )
    # Patch the declared uncompressed size of the second central-directory entry (the
    # zeros) to 10 bytes: the reader must not trust it.
    first = bomb.index(b"PK\x01\x02")
    second = bomb.index(b"PK\x01\x02", first + 4)
    struct.pack_into("<I", bomb, second + 24, 10)
    with pytest.raises(CardFormatError, match="is corrupt"):
        read_charx(bytes(bomb), max_total_bytes=MB)
