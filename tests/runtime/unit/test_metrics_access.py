"""`/metrics` names apps and grids, so only callers a grid call would admit may read it.

The HTTP app is driven in process by httpx's ASGI transport, which lets a test choose the
peer address the app sees: a remote peer is a documentation address (203.0.113.0/24),
checked by the real loopback test and the real `Authenticator` with a tokens file.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import aerogrid
from aerogrid import metrics
from aerogrid.server.app_service import AppService, HostedApp
from aerogrid.server.auth import Authenticator, AuthSettings, is_loopback
from aerogrid.server.hub import GridHub
from aerogrid.server.web import create_http_app

REMOTE = ("203.0.113.7", 40000)
LOOPBACK = ("127.0.0.1", 40000)
APP_NAME = "secretapp"


def endpoint() -> AppService:
    app = aerogrid.App(APP_NAME, broker="localhost:1")
    grid = app.Grid("secretgrid", columns=["x"])
    grid.ready = True
    hub = GridHub()
    hub.add_grid(APP_NAME, grid)
    grid["k"] = {"x": 1}
    hub.publish(APP_NAME, grid, grid.drain_changes())  # its row count is now a metric
    return AppService(hub, [HostedApp(APP_NAME, "acme")])


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"good": {"subject": "ann", "tenants": ["acme"]}}))
    return path


@pytest.fixture
def settings(tokens: Path) -> AuthSettings:
    return AuthSettings(tokens_file=tokens)


async def get_metrics(
    settings: AuthSettings, peer: tuple[str, int], headers: dict[str, str] | None = None
) -> httpx.Response:
    app = create_http_app(
        endpoint(), Authenticator(settings), is_ready=lambda: True, is_loopback=is_loopback
    )
    transport = httpx.ASGITransport(app=app, client=peer)
    async with httpx.AsyncClient(transport=transport, base_url="http://aerogrid") as client:
        return await client.get("/metrics", headers=headers or {})


def failures(reason: str) -> float:
    sample = metrics.REGISTRY.get_sample_value("aerogrid_auth_failures_total", {"reason": reason})
    return sample or 0.0


async def test_a_remote_caller_without_a_valid_token_gets_401(settings: AuthSettings) -> None:
    before = failures("missing")
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
        answer = await get_metrics(settings, REMOTE, headers)
        assert answer.status_code == 401, headers
        assert answer.headers["www-authenticate"] == "Bearer"
        assert APP_NAME not in answer.text and "aerogrid_" not in answer.text
    assert failures("missing") == before + 1  # refusals are counted like any other


async def test_a_valid_token_or_loopback_reads_the_metrics(settings: AuthSettings) -> None:
    with_token = await get_metrics(settings, REMOTE, {"authorization": "Bearer good"})
    on_loopback = await get_metrics(settings, LOOPBACK)
    for answer in (with_token, on_loopback):
        assert answer.status_code == 200
        assert f'aerogrid_grid_rows{{app="{APP_NAME}",grid="secretgrid"}} 1.0' in answer.text


async def test_loopback_is_not_enough_for_a_foreign_web_page_or_when_tokens_are_required(
    settings: AuthSettings, tokens: Path
) -> None:
    # A page of another site in the local user's browser is not a local caller.
    page = await get_metrics(settings, LOOPBACK, {"origin": "https://evil.example"})
    assert page.status_code == 401
    local_page = await get_metrics(settings, LOOPBACK, {"origin": "http://localhost:3000"})
    assert local_page.status_code == 200
    # AEROGRID_REQUIRE_AUTH=1 (behind a proxy every peer is loopback): a token it is.
    required = AuthSettings(tokens_file=tokens, allow_anonymous_loopback=False)
    assert (await get_metrics(required, LOOPBACK)).status_code == 401
    answer = await get_metrics(required, LOOPBACK, {"authorization": "Bearer good"})
    assert answer.status_code == 200
