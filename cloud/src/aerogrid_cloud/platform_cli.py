"""`aerogrid platform render|install`: the platform's own objects, printed or applied.

`render` prints every object (CRDs, operator and catalog with their RBAC, the Gateway,
mesh-wide mTLS, the system and build namespaces) as multi-document YAML, for review or
GitOps; `install` applies the same objects with server-side apply, so running it again
changes nothing and reports every object unchanged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import click
import yaml

from aerogrid_cloud.kube import Kube, KubeError, NotFound, ResourceType, connect
from aerogrid_cloud.render import platform_objects, resource_type
from aerogrid_cloud.settings import PlatformSettings, SettingsError

__all__ = ["INSTALL_MANAGER", "install_objects", "platform", "to_yaml"]

#: The field manager `platform install` applies under (the operator has its own).
INSTALL_MANAGER: Final = "aerogrid-platform"


def to_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, keys in the order rendered (apiVersion, kind, metadata first)."""
    return yaml.safe_dump_all([dict(o) for o in objects], sort_keys=False, width=100)


def _describe(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')} {where}{meta.get('name')}"


async def install_objects(
    kube: Kube,
    objects: Iterable[Mapping[str, Any]],
    *,
    dry_run: bool = False,
    echo: Callable[[str], None] | None = None,
) -> dict[str, str]:
    """Apply each object in order; returns {"Kind ns/name": created|configured|unchanged}."""
    results: dict[str, str] = {}
    for obj in objects:
        rtype = resource_type(obj)
        meta = obj.get("metadata") or {}
        try:
            before = await kube.get(rtype, str(meta["name"]), meta.get("namespace"))
            version = before["metadata"].get("resourceVersion")
        except NotFound:
            version = None
        after = await kube.apply(
            rtype, obj, field_manager=INSTALL_MANAGER, force=True, dry_run=dry_run
        )
        if version is None:
            outcome = "created"
        elif after["metadata"].get("resourceVersion") == version:
            outcome = "unchanged"
        else:
            outcome = "configured"
        results[_describe(obj)] = outcome
        if echo is not None:
            echo(f"{_describe(obj)}: {outcome}{' (dry run)' if dry_run else ''}")
        if obj.get("kind") == "CustomResourceDefinition" and not dry_run:
            await _wait_established(kube, rtype, str(meta["name"]))
    return results


async def _wait_established(
    kube: Kube, crds: ResourceType, name: str, timeout: float = 30.0
) -> None:
    """A CRD serves its kind only once Established: wait, so a following object can use it."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                crd = await kube.get(crds, name)
                conditions = (crd.get("status") or {}).get("conditions") or []
                if any(
                    c.get("type") == "Established" and c.get("status") == "True" for c in conditions
                ):
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise KubeError(f"CRD {name} is not Established after {timeout:.0f}s") from None


def _load(settings_file: Path | None) -> PlatformSettings:
    try:
        settings = PlatformSettings.load(settings_file)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
    placeholders = settings.placeholders()
    if placeholders:
        click.echo(
            f"warning: still at example values: {', '.join(placeholders)} "
            "(set them in --settings FILE or AEROGRID_PLATFORM_*)",
            err=True,
        )
    return settings


_SETTINGS_OPTION = click.option(
    "--settings",
    "settings_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Platform settings (YAML) [default: $AEROGRID_PLATFORM_SETTINGS, then defaults].",
)


@click.group("platform", context_settings={"help_option_names": ["-h", "--help"]})
def platform() -> None:
    """The AeroGrid platform in a cluster: CRDs, operator, catalog, gateway, mTLS."""


@platform.command()
@_SETTINGS_OPTION
def render(settings_file: Path | None) -> None:
    """Print every object the platform needs, as multi-document YAML."""
    settings = _load(settings_file)
    sys.stdout.write(to_yaml(platform_objects(settings)))


@platform.command()
@_SETTINGS_OPTION
@click.option("--context", help="The kubeconfig context to install into [default: current].")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, path_type=Path),
    help="[default: $KUBECONFIG, then ~/.kube/config]",
)
@click.option("--dry-run", is_flag=True, help="Ask the API server to check, not to store.")
def install(
    settings_file: Path | None, context: str | None, kubeconfig: Path | None, dry_run: bool
) -> None:
    """Apply the platform's objects with server-side apply (safe to run again)."""
    settings = _load(settings_file)

    async def install_all(kube: Kube) -> dict[str, str]:
        async with kube:
            objects = platform_objects(settings)
            return await install_objects(kube, objects, dry_run=dry_run, echo=click.echo)

    try:
        kube = connect(kubeconfig, context)
        results = asyncio.run(install_all(kube))
    except KubeError as exc:
        raise click.ClickException(str(exc)) from None
    counts = {o: sum(1 for r in results.values() if r == o) for o in set(results.values())}
    summary = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    click.echo(f"platform installed in context {kube.context}: {summary}")
