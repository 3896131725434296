"""Fixtures the registry-codec integration tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings
from support.schema_registry import TestRegistry


@pytest.fixture
async def registry(schema_registry: TestRegistry) -> AsyncIterator[SchemaRegistry]:
    """Our registry client on the session's real registry, closed after the test."""
    async with SchemaRegistry(RegistrySettings(url=schema_registry.url)) as client:
        yield client
