"""Running the operator: kopf with the platform's registry and settings, and its command.

``python -m aerogrid_cloud.operator`` (in the cluster: the service account; elsewhere:
--kubeconfig/--context) and ``--liveness URL`` for kopf's health endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import click
import kopf

from aerogrid_cloud.kube import Kube, KubeError, connect, in_cluster
from aerogrid_cloud.operator.kopf_config import kopf_settings
from aerogrid_cloud.operator.registry import make_registry
from aerogrid_cloud.operator.status import Cluster
from aerogrid_cloud.settings import PlatformSettings, SettingsError

__all__ = ["connection_info", "main", "run"]


def connection_info(kube: Kube) -> kopf.ConnectionInfo:
    """kopf's credentials from the kubeconfig entry a `Kube` client was made from."""
    config = kube.config
    cluster, user = config.cluster, config.user
    token = user.token if user is not None else None
    if user is not None and token is None and user.token_file:
        token = Path(user.token_file).read_text().strip()
    return kopf.ConnectionInfo(
        server=cluster.server,
        ca_path=str(config.abs_file(cluster.certificate_auth))
        if cluster.certificate_auth
        else None,
        ca_data=cluster.certificate_auth_data,
        insecure=cluster.insecure,
        scheme="Bearer" if token else None,
        token=token or None,
        certificate_path=(
            str(config.abs_file(user.client_cert))
            if user is not None and user.client_cert
            else None
        ),
        certificate_data=user.client_cert_data if user is not None else None,
        private_key_path=(
            str(config.abs_file(user.client_key)) if user is not None and user.client_key else None
        ),
        private_key_data=user.client_key_data if user is not None else None,
    )


async def run(
    kube: Kube,
    platform: PlatformSettings,
    *,
    login: kopf.ConnectionInfo | None = None,
    selector: Mapping[str, str] | None = None,
    namespaces: Iterable[str] = (),
    liveness: str | None = None,
    stop_flag: Any = None,
    ready_flag: Any = None,
) -> None:
    """Run the operator until `stop_flag` is set (the whole cluster unless `namespaces`)."""
    patterns = list(namespaces)
    registry = make_registry(Cluster(kube, platform), selector=selector, login=login)
    try:
        await kopf.operator(
            registry=registry,
            settings=kopf_settings(scanning=bool(patterns), selector=selector),
            standalone=True,
            clusterwide=not patterns,
            namespaces=patterns,
            liveness_endpoint=liveness,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        await kube.close()


@click.command()
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--context", help="A kubeconfig context (default: in-cluster, else current).")
@click.option(
    "--liveness", help="Serve kopf's health at this URL, e.g. http://0.0.0.0:8080/healthz"
)
@click.option("--namespace", "namespaces", multiple=True, help="Only these namespaces (globs).")
@click.option("--log-level", default="INFO", show_default=True)
def main(
    settings_file: Path | None,
    kubeconfig: Path | None,
    context: str | None,
    liveness: str | None,
    namespaces: tuple[str, ...],
    log_level: str,
) -> None:
    """Run the AeroGrid operator."""
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        platform = PlatformSettings.load(settings_file)
        inside = kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
        kube = in_cluster() if inside else connect(kubeconfig, context)
    except (SettingsError, KubeError) as exc:
        raise click.ClickException(str(exc)) from None
    login = None if inside else connection_info(kube)
    asyncio.run(run(kube, platform, login=login, namespaces=namespaces, liveness=liveness))
