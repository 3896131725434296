"""An in-memory stand-in for a schema registry's two calls the codecs make, for unit tests.

A STAND-IN: it answers `GET /schemas/ids/N` and `POST /subjects/S/versions` of the
Confluent REST API through httpx's MockTransport, so the real `SchemaRegistry` client
runs unchanged in a unit test; no compatibility checks, no other endpoint. The tests
against a real registry (Apicurio) use `tests/support/schema_registry.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from aerogrid.schemas.registry import SchemaRegistry
from aerogrid.schemas.registry_settings import RegistrySettings

URL = "http://registry.invalid/apis/ccompat/v7"


@dataclass
class MemoryRegistry:
    """Schemas by id, and (subject, text) → id; ids start at 1 like a fresh registry's."""

    schemas: dict[int, dict[str, Any]] = field(default_factory=dict)
    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, schema: str, schema_type: str, subject: str = "") -> int:
        """Store a schema as a producer would have registered it; its new id."""
        key = (subject, schema)
        if key not in self.ids:
            self.ids[key] = len(self.schemas) + 1
            body: dict[str, Any] = {"schema": schema}
            if schema_type != "AVRO":
                body["schemaType"] = schema_type
            self.schemas[self.ids[key]] = body
        return self.ids[key]

    def client(self) -> SchemaRegistry:
        return SchemaRegistry(RegistrySettings(url=URL), transport=httpx.MockTransport(self._serve))

    def _serve(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/apis/ccompat/v7")
        self.requests.append(f"{request.method} {path}")
        parts = path.strip("/").split("/")
        if request.method == "GET" and parts[:2] == ["schemas", "ids"]:
            body = self.schemas.get(int(parts[2]))
            if body is None:
                return httpx.Response(404, json={"error_code": 40403, "message": "not found"})
            return httpx.Response(200, json=body)
        if request.method == "POST" and parts[0] == "subjects" and parts[2] == "versions":
            sent = json.loads(request.content)
            schema_id = self.add(sent["schema"], sent.get("schemaType", "AVRO"), unquote(parts[1]))
            return httpx.Response(200, json={"id": schema_id})
        return httpx.Response(404, json={"error_code": 404, "message": f"no route {path}"})
