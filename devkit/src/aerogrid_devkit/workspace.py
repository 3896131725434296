"""A workspace: a folder with `aerogrid.toml` (apps, broker, endpoint) and an app per folder."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from aerogrid.errors import ConfigurationError

MANIFEST = "aerogrid.toml"


@dataclass(frozen=True)
class Workspace:
    root: Path
    apps: dict[str, Path] = field(default_factory=dict)
    broker_mode: str = "embedded"
    #: For broker mode "external": the bootstrap URI (any form `aerogrid run` accepts).
    broker_uri: str | None = None
    endpoint_port: int = 50051

    @classmethod
    def load(cls, root: Path) -> Workspace:
        manifest = root / MANIFEST
        if not manifest.is_file():
            raise ConfigurationError(
                f"{root} is not a workspace: no {MANIFEST} (make one with aerogrid new)"
            )
        try:
            data = tomllib.loads(manifest.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"{manifest}: {exc}") from None
        apps: dict[str, Path] = {}
        for name, spec in data.get("apps", {}).items():
            folder = root / str(spec.get("path", name))
            app_file = folder / "app.py"
            if not app_file.is_file():
                raise ConfigurationError(f"{manifest}: app {name!r} has no {app_file}")
            apps[name] = app_file
        broker = data.get("broker", {})
        mode = broker.get("mode", "embedded")
        if mode not in ("embedded", "external"):
            raise ConfigurationError(
                f"{manifest}: broker mode {mode!r} is not embedded or external"
            )
        if mode == "external" and not broker.get("bootstrap"):
            raise ConfigurationError(
                f'{manifest}: broker mode external needs bootstrap = "host:port"'
            )
        return cls(
            root=root,
            apps=apps,
            broker_mode=mode,
            broker_uri=broker.get("bootstrap"),
            endpoint_port=int(data.get("endpoint", {}).get("port", 50051)),
        )
