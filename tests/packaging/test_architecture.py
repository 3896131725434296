"""ARCHITECTURE.md stays true: every path it names (from the repository root) exists,
and the runtime distribution imports nothing of the devkit or the cloud package."""

from __future__ import annotations

import re

from support.paths import REPO

DOC = REPO / "ARCHITECTURE.md"


def named_paths() -> list[str]:
    return sorted(set(re.findall(r"`([\w./-]+(?:\.py|/))`", DOC.read_text())))


def test_every_module_the_architecture_names_exists() -> None:
    paths = named_paths()
    assert len(paths) > 20, "the doc should name the modules of the data path"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"ARCHITECTURE.md names modules that do not exist: {missing}"


def test_the_runtime_imports_neither_the_devkit_nor_the_cloud_package() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in (REPO / "runtime/src/aerogrid").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+aerogrid_(devkit|cloud)\b", path.read_text(), re.M)
    ]
    assert not offenders, f"the runtime must not import the devkit or cloud: {offenders}"
