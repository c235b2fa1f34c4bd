"""The committed ABI and bytecode are exactly what the pinned compiler makes of the sources.

``make contracts`` rewrites chain/artifacts/; this test compiles again into a temporary folder
and compares, so a contract edited without recompiling (or artifacts edited by hand) fails CI.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

CHAIN = Path(__file__).resolve().parents[2] / "chain"


def test_committed_artifacts_match_the_sources(tmp_path: Path) -> None:
    if shutil.which("node") is None:
        pytest.fail("node is missing: scripts/bootstrap.sh installs it with npm ci in chain/")
    assert (CHAIN / "node_modules" / "solc").is_dir(), "run `npm ci` in chain/ (make install)"
    done = subprocess.run(
        ["node", "build/compile.mjs", "--out", str(tmp_path)],
        cwd=CHAIN,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    fresh = sorted(p.name for p in tmp_path.glob("*.json"))
    committed = sorted(p.name for p in (CHAIN / "artifacts").glob("*.json"))
    assert fresh == committed
    assert {
        "AgentNFT.json",
        "AgentShares.json",
        "ERC6551Account.json",
        "Payments.json",
        "TestStablecoin.json",
    } <= set(fresh)
    for name in fresh:
        new = json.loads((tmp_path / name).read_text())
        old = json.loads((CHAIN / "artifacts" / name).read_text())
        assert new["abi"] == old["abi"], f"{name}: ABI differs; run `make contracts`"
        assert new["bytecode"] == old["bytecode"], f"{name}: bytecode differs; run `make contracts`"
        assert new == old, f"{name}: compiler settings differ; run `make contracts`"
