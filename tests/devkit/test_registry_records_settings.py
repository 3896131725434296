"""Which registry `aerogrid produce` / `tail` and the TUI use: the one the workspace's apps get.

No registry runs here: the order of the sources is what is checked (flag, environment,
the workspace's `[schema_registry]`, none), and what a record says when there is none.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aerogrid.errors import ConfigurationError
from aerogrid.schemas.wire import frame
from aerogrid_devkit.registry_records.decode import RecordDecoder, Undecoded
from aerogrid_devkit.registry_records.settings import resolve_registry


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No registry variable and a private AEROGRID_HOME (so no local registry is found)."""
    monkeypatch.setenv("AEROGRID_HOME", str(tmp_path / "home"))
    for name in ("", "_USERNAME", "_PASSWORD", "_CAFILE", "_CERTFILE", "_KEYFILE", "_VERIFY"):
        monkeypatch.delenv(f"AEROGRID_SCHEMA_REGISTRY{name}", raising=False)


def _workspace(tmp_path: Path, table: str) -> Path:
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    (root / "aerogrid.toml").write_text('[broker]\nmode = "embedded"\n' + table)
    return root


def test_none_without_flag_variable_or_workspace_registry(tmp_path: Path) -> None:
    assert resolve_registry(None, tmp_path) is None
    assert resolve_registry(None, _workspace(tmp_path, "")) is None
    off = _workspace(tmp_path, '[schema_registry]\nmode = "off"\n')
    assert resolve_registry(None, off) is None


def test_the_workspaces_external_registry_with_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _workspace(
        tmp_path,
        '[schema_registry]\nmode = "external"\nurl = "https://registry.corp:8081/"\n'
        'username = "svc"\npassword_env = "REG_PW"\nca_file = "certs/ca.pem"\n',
    )
    monkeypatch.setenv("REG_PW", "s3cret")
    found = resolve_registry(None, root)
    assert found is not None
    assert (found.url, found.username, found.password, found.cafile) == (
        "https://registry.corp:8081",
        "svc",
        "s3cret",
        str(root / "certs/ca.pem"),
    )
    # the variable wins over the workspace, the flag over both
    monkeypatch.setenv("AEROGRID_SCHEMA_REGISTRY", "http://127.0.0.1:8085/apis/ccompat/v7")
    by_env = resolve_registry(None, root)
    assert by_env is not None and by_env.url == "http://127.0.0.1:8085/apis/ccompat/v7"
    assert by_env.username is None
    by_flag = resolve_registry("http://u:p@127.0.0.1:9/x", root)
    assert by_flag is not None and (by_flag.url, by_flag.username) == ("http://127.0.0.1:9/x", "u")
    with pytest.raises(ConfigurationError, match="is not http"):
        resolve_registry("ftp://registry", root)


async def test_without_a_registry_a_framed_value_says_how_to_name_one() -> None:
    decoder = RecordDecoder(None)
    shown = await decoder.decode(frame(7, b"\x02"), "orders")
    assert isinstance(shown, Undecoded)
    assert shown.reason == (
        "Confluent wire format, schema id 7: no schema registry is configured: pass "
        "--schema-registry URL, set AEROGRID_SCHEMA_REGISTRY, add [schema_registry] to "
        "aerogrid.toml or run `aerogrid broker up --schema-registry`"
    )
    assert await decoder.decode(b"plain text", "orders") is None  # not framed: as stored
