"""The registry client's requests stay out of an app's log at INFO (httpx logs each one).

The registry's answers come from an httpx MockTransport: httpx logs its request line for
any transport, and what is tested is which lines reach the log, not the HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_http import HTTPX_LOGGER
from aerogrid.schemas.registry_settings import RegistrySettings

URL = "http://registry.invalid/apis/ccompat/v7"


async def answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"schema": '"string"'})


@pytest.fixture
def httpx_logger() -> Iterator[logging.Logger]:
    """httpx's logger as a fresh process has it (level unset), restored afterwards."""
    logger = logging.getLogger(HTTPX_LOGGER)
    before = logger.level
    logger.setLevel(logging.NOTSET)
    yield logger
    logger.setLevel(before)


async def fetch_two_schemas(caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.INFO)  # an app's default level, on the root logger
    registry = SchemaRegistry(RegistrySettings(url=URL), transport=httpx.MockTransport(answer))
    async with registry:
        await registry.schema_by_id(7)
        await registry.schema_by_id(8)
    return caplog.text


async def test_fetching_schemas_logs_no_request_lines_at_info(
    httpx_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    assert "HTTP Request:" not in await fetch_two_schemas(caplog)
    assert httpx_logger.isEnabledFor(logging.WARNING)  # httpx's warnings still show


async def test_an_httpx_level_the_app_chose_is_kept(
    httpx_logger: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    httpx_logger.setLevel(logging.INFO)
    text = await fetch_two_schemas(caplog)
    assert text.count("HTTP Request: GET") == 2, text
