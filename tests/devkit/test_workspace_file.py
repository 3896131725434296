"""aerogrid.toml as a typed file: each mistake is one sentence that names where it is.

The sentences the broker tables have always given are in test_broker_modes.py; here, the
path every type error now carries, and what the typed file still lets through.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aerogrid.errors import ConfigurationError
from aerogrid_devkit.workspace import DockerConfig, Workspace


def load(folder: Path, text: str) -> Workspace:
    folder.mkdir(exist_ok=True)
    (folder / "aerogrid.toml").write_text(text)
    return Workspace.load(folder)


@pytest.mark.parametrize(
    ("text", "sentence", "where"),
    [
        ("[apps.shop]\npath = 3\n", "[apps.shop] path must be a folder name", "apps.shop.path"),
        ("[apps]\nshop = 1\n", "[apps.shop] must be a table", "apps.shop"),
        ('[endpoint]\nport = "x"\n', "[endpoint] port 'x' is not a port number", "endpoint.port"),
        ("[broker]\nport = 70000\n", "[broker] port 70000 is not a port number", "broker.port"),
        ("broker = [1]\n", "[broker] must be a table", "broker"),
        (
            '[broker.tls]\nverify = "yes"\n',
            "[broker.tls] verify must be true or false",
            "broker.tls.verify",
        ),
        (
            "[broker.sasl]\nusername = 4\n",
            "[broker.sasl] username must be a string",
            "broker.sasl.username",
        ),
    ],
)
def test_a_wrong_type_is_named_by_its_path(
    tmp_path: Path, text: str, sentence: str, where: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'aerogrid.toml'}: {sentence}")
    assert f"; at {where}: expected " in message
    assert "\n" not in message


def test_unknown_keys_are_refused_only_where_they_always_were(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown key 'ca' in \[broker.tls\] \(known: "):
        load(tmp_path, '[broker.tls]\nca = "x"\n')
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "app.py").write_text("")
    loose = load(
        tmp_path,
        '[apps.shop]\npath = "shop"\nowner = "desk"\n[endpoint]\nport = 50100\nhost = "x"\n'
        "[someone-elses]\nkey = 1\n",
    )
    assert loose.apps == {"shop": tmp_path / "shop" / "app.py"}
    assert loose.endpoint_port == 50100


def test_the_docker_table_is_its_config(tmp_path: Path) -> None:
    docker = load(tmp_path, '[broker.docker]\nimage = "kafka:1"\nstart_timeout = 5\n').docker
    assert docker == DockerConfig(image="kafka:1", start_timeout=5.0)
    assert isinstance(docker.start_timeout, float)
