"""The devkit's schema registry: `[schema_registry]` in aerogrid.toml and `aerogrid broker up
--schema-registry`, which leaves the real Apicurio Registry running beside the embedded broker
(schemas on disk in the workspace), `broker status` showing it and `broker down` stopping it.

Every test gets its own AEROGRID_HOME; every registry a test starts is stopped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from aerogrid.errors import ConfigurationError
from aerogrid_devkit import embedded
from aerogrid_devkit.brokers.java_runtime import find_java
from aerogrid_devkit.commands import broker as broker_cli
from aerogrid_devkit.schema_registry import cli as registry_cli
from aerogrid_devkit.schema_registry import local
from aerogrid_devkit.workspace import Workspace
from support.brokers import TansuBroker
from support.ci import unavailable
from support.schema_registry import RegistryUnavailable, ensure_registry_built

pytestmark = pytest.mark.timeout(240)

ORDER = json.dumps({"type": "record", "name": "Order", "fields": [{"name": "qty", "type": "long"}]})


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private AEROGRID_HOME; whatever a test left running is stopped after it."""
    folder = tmp_path / "home"
    monkeypatch.setenv("AEROGRID_HOME", str(folder))
    monkeypatch.delenv("AEROGRID_BROKER", raising=False)
    yield folder
    local.down()
    embedded.down()


def _workspace(tmp_path: Path, table: str) -> Path:
    root = tmp_path / "ws"
    root.mkdir(exist_ok=True)
    (root / "aerogrid.toml").write_text('[broker]\nmode = "embedded"\nport = 0\n' + table)
    return root


def test_the_table_is_checked_and_external_registries_reach_apps(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path,
        '[schema_registry]\nmode = "external"\nurl = "https://registry.corp:8081"\n'
        'username = "svc"\npassword_env = "REG_PW"\nca_file = "certs/ca.pem"\n',
    )
    config = Workspace.load(root).schema_registry
    assert config is not None
    assert config.app_env(root, None, {"REG_PW": "s3cret"}) == {
        "AEROGRID_SCHEMA_REGISTRY": "https://registry.corp:8081",
        "AEROGRID_SCHEMA_REGISTRY_USERNAME": "svc",
        "AEROGRID_SCHEMA_REGISTRY_PASSWORD": "s3cret",
        "AEROGRID_SCHEMA_REGISTRY_CAFILE": str(root / "certs/ca.pem"),
    }
    refused = {
        'mode = "cloud"': "mode 'cloud' is not one of off, local, external",
        'mode = "external"': 'mode "external" needs url',
        'password = "x"': "never put a password in aerogrid.toml",
        "port = 70000": "[schema_registry]",
        'colour = "red"': "colour",
    }
    for line, said in refused.items():
        _workspace(tmp_path, f"[schema_registry]\n{line}\n")
        with pytest.raises(ConfigurationError, match=said.replace("[", r"\[")):
            Workspace.load(root)


def test_broker_up_with_a_registry_status_down_and_purge(tmp_path: Path) -> None:
    java, said = find_java()
    if java is None:
        unavailable(f"the local schema registry needs Java 17+: {said}")
    reason = TansuBroker.unavailable_reason()
    if reason is not None:
        unavailable(reason)
    try:
        ensure_registry_built()
    except RegistryUnavailable as exc:
        unavailable(str(exc))
    root = _workspace(tmp_path, "[schema_registry]\nport = 0\n")  # mode off: the flag starts it
    runner = CliRunner()

    done = runner.invoke(broker_cli, ["up", "--workspace", str(root), "--schema-registry"])
    assert done.exit_code == 0, done.output
    state = local.read_state()
    assert state is not None and f"schema registry started: {state.url}" in done.output
    assert Path(state.data_dir) == root / ".aerogrid" / "schema-registry-data"
    schema_id = SchemaRegistryClient({"url": state.url}).register_schema(
        "orders-value", Schema(ORDER, "AVRO")
    )
    ws = Workspace.load(root)
    assert registry_cli.app_env(ws.root, ws.schema_registry) == {
        "AEROGRID_SCHEMA_REGISTRY": state.url
    }

    again = runner.invoke(broker_cli, ["up", "--workspace", str(root), "--schema-registry"])
    assert again.exit_code == 0 and "schema registry already running" in again.output
    shown = runner.invoke(broker_cli, ["status", "--workspace", str(root), "--json"])
    assert (
        json.loads(shown.output)["schema_registry"]
        == f"schema registry: {state.url} (pid {state.pid})"
    )

    stopped = runner.invoke(broker_cli, ["down", "--workspace", str(root)])
    assert "schema registry stopped" in stopped.output and "schemas kept" in stopped.output
    assert local.recorded_state() is None and not embedded.alive(state.pid)

    (root / "aerogrid.toml").write_text(
        '[broker]\nmode = "embedded"\nport = 0\n[schema_registry]\nmode = "local"\nport = 0\n'
    )
    back = runner.invoke(broker_cli, ["up", "--workspace", str(root)])  # the table starts it
    assert back.exit_code == 0, back.output
    restarted = local.read_state()
    assert restarted is not None
    kept = SchemaRegistryClient({"url": restarted.url}).get_schema(schema_id)
    assert json.loads(kept.schema_str or "") == json.loads(ORDER)

    purged = runner.invoke(broker_cli, ["down", "--workspace", str(root), "--purge"])
    assert "its schemas deleted" in purged.output
    assert not (root / ".aerogrid" / "schema-registry-data").exists()
