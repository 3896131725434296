"""The procedures served over the web wires: URL path -> message types and service call."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from google.protobuf.message import Message

from aerogrid.server.identity import Caller
from aerogrid.server.service import ServiceAPI
from aerogrid.server.web.serialization import json_transcoder
from aerogrid.v1 import catalog_pb2, grid_pb2

__all__ = ["Method", "method_table"]

_Req = TypeVar("_Req", bound=Message)


@dataclass(frozen=True, slots=True)
class Method(Generic[_Req]):
    """One RPC: its message types and the service call (unary or server-streaming)."""

    request_type: type[_Req]
    response_type: type[Message]
    unary: Callable[[_Req, Caller], Awaitable[Message]] | None = None
    stream: Callable[[_Req, Caller], AsyncGenerator[bytes, None]] | None = None
    #: Streams only: a serialized response -> JSON (streams yield bytes).
    to_json: Callable[[bytes], bytes] | None = None


def method_table(service: ServiceAPI) -> dict[str, Method[Any]]:
    """URL path -> method, with paths taken from the descriptors so they match the proto."""
    grid = grid_pb2.DESCRIPTOR.services_by_name["GridService"].full_name
    catalog = catalog_pb2.DESCRIPTOR.services_by_name["CatalogService"].full_name
    return {
        f"/{grid}/ListGrids": Method(
            grid_pb2.ListGridsRequest, grid_pb2.ListGridsResponse, unary=service.list_grids
        ),
        f"/{grid}/Subscribe": Method(
            grid_pb2.SubscribeRequest,
            grid_pb2.SubscribeResponse,
            stream=service.subscribe,
            to_json=json_transcoder(grid_pb2.SubscribeResponse),
        ),
        f"/{catalog}/ListApps": Method(
            catalog_pb2.ListAppsRequest, catalog_pb2.ListAppsResponse, unary=service.list_apps
        ),
        f"/{catalog}/WatchApps": Method(
            catalog_pb2.WatchAppsRequest,
            catalog_pb2.WatchAppsResponse,
            stream=service.watch_apps,
            to_json=json_transcoder(catalog_pb2.WatchAppsResponse),
        ),
    }
