"""Reaching the Docker daemon: where it is, whether it answers, and its errors in short.

The docker mode and `auto` (which picks docker when a daemon answers) both start here.
"""

from __future__ import annotations

import os

import docker
import docker.errors
import requests
from docker.context import ContextAPI
from docker.utils import kwargs_from_env

from aerogrid_devkit.brokers.base import BrokerError

__all__ = ["DEFAULT_DOCKER_SOCKET", "docker_cause", "docker_client", "docker_host"]

DEFAULT_DOCKER_SOCKET = "unix:///var/run/docker.sock"


def docker_host() -> str:
    """Where `docker.from_env()` looks: DOCKER_HOST, else the Docker context, else the socket."""
    base = kwargs_from_env().get("base_url")
    if not base:
        try:
            base = ContextAPI.kwargs_from_context(environment=dict(os.environ)).get("base_url")
        except Exception:
            base = None
    return str(base or DEFAULT_DOCKER_SOCKET)


def docker_cause(exc: BaseException) -> str:
    """The gist of a failed Docker call (the SDK nests the cause in long texts)."""
    text = str(exc)
    for needle, gist in (
        ("No such file or directory", "no socket there"),
        ("Connection refused", "connection refused"),
        ("timed out", "no answer in time"),
        ("Permission denied", "permission denied (is your user in the docker group?)"),
    ):
        if needle in text:
            return gist
    return text if len(text) <= 300 else text[:300] + "..."


def docker_client(timeout: int = 60) -> docker.DockerClient:
    """A client whose daemon answered a ping; BrokerError naming where it looked otherwise."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except (docker.errors.DockerException, requests.RequestException) as exc:
        raise BrokerError(
            f"no Docker daemon answered at {docker_host()} ({docker_cause(exc)})"
        ) from None
    return client
