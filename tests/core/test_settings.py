"""Settings: nested by feature in code, one flat ANIMA_ variable each for people.

The README's tables are the user-facing contract, so they and VARIABLES must name the same
variables; the flat names also keep working as keyword arguments and in ``model_copy``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from core.settings import SECTIONS, VARIABLES, LLMSettings, Settings

ROOT = Path(__file__).resolve().parents[2]

# Properties that moved into a section together with the fields they are computed from.
MOVED_PROPERTIES = {
    "max_upload_bytes",
    "max_request_bytes",
    "allowed_host_list",
    "allowed_origin_list",
    "resolved_public_url",
    "voice_max_upload_bytes",
    "knowledge_max_upload_bytes",
}


def _section_model(section: str) -> type[BaseModel]:
    annotation = Settings.model_fields[section].annotation
    assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation


def test_every_variable_names_a_real_field_and_every_field_has_one_variable() -> None:
    assert len(VARIABLES) > 80
    places = list(VARIABLES.values())
    assert len(set(places)) == len(places), "two variables for one field"
    for name, (section, field) in VARIABLES.items():
        owner = Settings if section is None else _section_model(section)
        assert field in owner.model_fields, f"ANIMA_{name.upper()} -> {section}.{field}"
    fields = {(None, f) for f in Settings.model_fields if f not in SECTIONS}
    for section in SECTIONS:
        fields |= {(section, f) for f in _section_model(section).model_fields}
    assert fields == set(places), "a field no ANIMA_ variable sets"


def test_environment_and_flat_keywords_reach_the_nested_fields(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("ANIMA_LLM_MODEL", "from-env")
    monkeypatch.setenv("anima_knowledge_top_k", "7")  # names are case-insensitive, as before
    monkeypatch.setenv("ANIMA_CHAIN", "rpc")
    monkeypatch.setenv("ANIMA_CHAIN_MINTER_PASSWORD", "s3cret")
    monkeypatch.setenv("ANIMA_LLM_PRELOAD", "false")
    monkeypatch.setenv("ANIMA_DATA_DIR", str(tmp_path / "d"))
    settings = Settings()
    assert settings.llm.model == "from-env"
    assert settings.knowledge.top_k == 7
    assert settings.chain.kind == "rpc"
    assert isinstance(settings.chain.minter_password, SecretStr)
    assert settings.chain.minter_password.get_secret_value() == "s3cret"
    assert settings.llm.preload is False
    assert settings.data_dir == tmp_path / "d"

    # A keyword argument wins over the environment; the rest of the section still comes from it.
    mixed = Settings(llm_model="from-kwarg", max_upload_mb=3, chain="eth-tester")
    assert mixed.llm.model == "from-kwarg"
    assert mixed.llm.preload is False
    assert mixed.server.max_upload_bytes == 3 * 1024 * 1024
    assert mixed.chain.kind == "eth-tester"
    assert mixed.chain.minter_password is not None

    # Nested forms work too.
    nested = Settings(llm=LLMSettings(model="nested"), knowledge={"top_k": 9})
    assert (nested.llm.model, nested.knowledge.top_k) == ("nested", 9)
    assert Settings(chain={"kind": "anvil", "id": 5}).chain.id == 5


def test_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("ANIMA_LLM_MODEL", "ANIMA_VOICE_ENDPOINT_MS", "ANIMA_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "ANIMA_LLM_MODEL=from-dotenv\nANIMA_VOICE_ENDPOINT_MS=600\nANIMA_PORT=1\n"
        "ANIMA_NOT_A_SETTING=1\nOTHER_TOOL=x\n"
    )
    monkeypatch.setenv("ANIMA_PORT", "8123")
    settings = Settings()
    assert settings.llm.model == "from-dotenv"
    assert settings.voice.endpoint_ms == 600
    assert settings.server.port == 8123


def test_unknown_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="modle"):
        Settings(llm={"modle": "x"})
    with pytest.raises(ValidationError, match="modle"):
        LLMSettings(modle="x")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="llm_modle"):
        Settings(llm_modle="x")
    with pytest.raises(ValidationError, match=r"knowledge\.top_k") as refused:
        Settings(knowledge_top_k=0)  # bounds still apply to flat names
    assert "ANIMA_KNOWLEDGE_TOP_K" in str(refused.value.__notes__)


def test_model_copy_takes_flat_names_and_never_shares_a_section(tmp_path: Path) -> None:
    base = Settings(data_dir=tmp_path, llm_model="a", chain="anvil")
    assert base.resolved_database_url.endswith("anima.db")
    copy = base.model_copy(
        update={"llm_model": "b", "llm_gguf_file": None, "chain": "rpc", "data_dir": tmp_path / "x"}
    )
    assert (copy.llm.model, copy.chain.kind) == ("b", "rpc")
    assert (base.llm.model, base.chain.kind) == ("a", "anvil")
    assert copy.resolved_database_url == f"sqlite:///{(tmp_path / 'x' / 'anima.db').resolve()}"
    for section in SECTIONS:
        assert getattr(copy, section) is not getattr(base, section)
    copy.server.max_upload_mb = 1
    assert base.server.max_upload_mb == 20


def _readme_table_variables() -> set[str]:
    rows = [line for line in (ROOT / "README.md").read_text().splitlines() if line.startswith("|")]
    return {name for row in rows for name in re.findall(r"`ANIMA_([A-Z0-9_]+)`", row)}


def test_readme_tables_list_exactly_the_accepted_variables() -> None:
    documented = _readme_table_variables()
    accepted = {name.upper() for name in VARIABLES}
    assert len(documented) > 80
    assert documented - accepted == set(), "documented but not accepted"
    assert accepted - documented == set(), "accepted but not in README's tables"


def test_each_variable_lands_on_its_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no .env here
    for key in [k for k in os.environ if k.upper().startswith("ANIMA_")]:
        monkeypatch.delenv(key)
    for name, (section, field) in VARIABLES.items():
        place = (field,) if section is None else (section, field)
        with monkeypatch.context() as env:
            # An empty value is a wrong one for most fields: then the error names the place.
            env.setenv(f"ANIMA_{name.upper()}", "")
            try:
                loaded = Settings()
            except ValidationError as refused:
                assert {e["loc"][: len(place)] for e in refused.errors()} == {place}, name
            else:
                owner = loaded if section is None else getattr(loaded, section)
                assert str(getattr(owner, field)) in {"", "."}, name


def test_no_code_reads_a_flat_name_off_settings() -> None:
    moved = {name for name, (section, _) in VARIABLES.items() if section} | MOVED_PROPERTIES
    names = "|".join(sorted(moved - {"chain"}, key=len, reverse=True))
    # `chain` is also the section: settings.chain.kind is the nested read.
    pattern = re.compile(rf"\b(?:settings|\w+_settings)\.(?:(?:{names})\b|chain\b(?!\s*\.\s*\w|`))")
    sources = [
        p
        for p in ROOT.rglob("*.py")
        if not {".venv", "node_modules", "data"} & set(p.relative_to(ROOT).parts)
    ]
    assert len(sources) > 50
    flat_reads = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sources
        if path != ROOT / "core" / "settings.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert flat_reads == [], "read through the sections (settings.llm.model, ...)"
