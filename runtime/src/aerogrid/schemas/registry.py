"""`SchemaRegistry`: the async client of a Confluent-compatible schema registry REST API.

Works with Confluent's registry, Apicurio's `/apis/ccompat/v7`, Karapace and Redpanda.
Built on httpx (already our HTTP client elsewhere) rather than confluent-kafka's
AsyncSchemaRegistryClient (it pulls librdkafka and its own cache and retry rules into
the runtime image) or python-schema-registry-client (retries and error types of its own):
the engine needs a handful of calls, its own error split (`aerogrid.schemas.errors`) and
no retries here, because the pause-and-retry policy lives in the engine, in one place.

Schema ids are immutable, so `schema_by_id` caches forever and asks once per id, even
when many records with a new id arrive at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx

from aerogrid.schemas.errors import SchemaRegistryError
from aerogrid.schemas.registry_http import RegistryHttp
from aerogrid.schemas.registry_settings import RegistrySettings

__all__ = ["RegisteredSchema", "RegistrySettings", "SchemaReference", "SchemaRegistry"]

#: How deep references may nest (a cycle would otherwise never end).
MAX_REFERENCE_DEPTH = 16


@dataclass(frozen=True)
class SchemaReference:
    """A schema this one imports: its name in the importing schema, subject and version."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it; `schema_type` is AVRO, PROTOBUF or JSON.

    `resolved` holds the schemas `references` name, in the same order, each with its own
    `resolved` (filled by `SchemaRegistry.with_references`; empty until then).
    """

    schema_id: int
    schema_type: str
    schema: str
    references: tuple[SchemaReference, ...] = ()
    resolved: tuple[RegisteredSchema, ...] = ()


class SchemaRegistry:
    """One registry's client; `aclose()` it (or use `async with`) when done."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._http = RegistryHttp(settings, timeout=timeout, transport=transport)
        self._by_id: dict[int, RegisteredSchema] = {}
        self._fetching: dict[int, asyncio.Future[RegisteredSchema]] = {}
        self._ids: dict[tuple[str, str, str, tuple[SchemaReference, ...]], int] = {}
        self._versions: dict[tuple[str, int], RegisteredSchema] = {}

    @property
    def url(self) -> str:
        return self.settings.url

    async def __aenter__(self) -> SchemaRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def check(self) -> None:
        """One authenticated request (GET /subjects): the registry answers and accepts us."""
        await self._http.request("GET", "/subjects", what="the subject list")

    async def schema_by_id(self, schema_id: int) -> RegisteredSchema:
        """The schema with this id; SchemaNotFound if the registry has none."""
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        pending = self._fetching.get(schema_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_by_id(schema_id))
            self._fetching[schema_id] = pending
            pending.add_done_callback(lambda done: self._fetched(schema_id, done))
        return await asyncio.shield(pending)

    def _fetched(self, schema_id: int, done: asyncio.Future[RegisteredSchema]) -> None:
        """Forget the finished fetch (a failure is not cached: the next call asks again)."""
        self._fetching.pop(schema_id, None)
        if not done.cancelled():
            done.exception()  # retrieved, even when every waiter was cancelled

    async def _fetch_by_id(self, schema_id: int) -> RegisteredSchema:
        body = await self._http.request(
            "GET", f"/schemas/ids/{schema_id}", what=f"schema id {schema_id}", schema_id=schema_id
        )
        registered = _registered(schema_id, body)
        self._by_id[schema_id] = registered
        return registered

    async def version(self, subject: str, version: int) -> RegisteredSchema:
        """One version of a subject (what a reference names); cached, versions are immutable."""
        key = (subject, version)
        known = self._versions.get(key)
        if known is None:
            body = await self._http.request(
                "GET",
                f"/subjects/{quote(subject, safe='')}/versions/{version}",
                what=f"version {version} of subject {subject!r}",
            )
            known = self._versions[key] = _registered(int(body["id"]), body)
        return known

    async def with_references(self, registered: RegisteredSchema) -> RegisteredSchema:
        """`registered` with every schema it references, transitively, in `resolved`."""
        return await self._resolve(registered, depth=0)

    async def _resolve(self, registered: RegisteredSchema, depth: int) -> RegisteredSchema:
        if not registered.references or registered.resolved:
            return registered
        if depth >= MAX_REFERENCE_DEPTH:
            raise SchemaRegistryError(
                f"schema id {registered.schema_id}: references nest deeper than "
                f"{MAX_REFERENCE_DEPTH} (a cycle?)",
                url=self.url,
            )
        resolved = []
        for reference in registered.references:
            dependency = await self.version(reference.subject, reference.version)
            resolved.append(await self._resolve(dependency, depth + 1))
        return replace(registered, resolved=tuple(resolved))

    async def register(
        self,
        subject: str,
        schema: str,
        schema_type: str = "AVRO",
        references: Sequence[SchemaReference] = (),
    ) -> int:
        """The id of `schema` under `subject`, registering it if new (cached per schema text)."""
        refs = tuple(references)
        key = (subject, schema, schema_type, refs)
        known = self._ids.get(key)
        if known is not None:
            return known
        payload: dict[str, Any] = {"schema": schema}
        if schema_type != "AVRO":
            payload["schemaType"] = schema_type
        if refs:
            payload["references"] = [
                {"name": r.name, "subject": r.subject, "version": r.version} for r in refs
            ]
        body = await self._http.request(
            "POST",
            f"/subjects/{quote(subject, safe='')}/versions",
            what=f"registering a schema under subject {subject!r}",
            json=payload,
            subject=subject,
        )
        schema_id = int(body["id"])
        self._ids[key] = schema_id
        self._by_id.setdefault(schema_id, RegisteredSchema(schema_id, schema_type, schema, refs))
        return schema_id

    async def latest(self, subject: str) -> RegisteredSchema:
        """The latest version registered under `subject`; SchemaNotFound if none."""
        body = await self._http.request(
            "GET",
            f"/subjects/{quote(subject, safe='')}/versions/latest",
            what=f"the latest schema of subject {subject!r}",
        )
        registered = _registered(int(body["id"]), body)
        self._by_id.setdefault(registered.schema_id, registered)
        return registered

    async def subjects_of(self, schema_id: int) -> list[str]:
        """The subjects the id is registered under (not cached: a schema may gain subjects)."""
        body = await self._http.request(
            "GET",
            f"/schemas/ids/{schema_id}/versions",
            what=f"the subjects of schema id {schema_id}",
            schema_id=schema_id,
        )
        if not isinstance(body, list):
            raise SchemaRegistryError(
                f"schema registry {self.url} answered the subjects of schema id {schema_id} "
                "with something other than a list",
                url=self.url,
            )
        return [str(entry["subject"]) for entry in body if isinstance(entry, dict)]


def _registered(schema_id: int, body: Any) -> RegisteredSchema:
    """A registry answer's schema (Confluent leaves `schemaType` out for Avro)."""
    return RegisteredSchema(
        schema_id=schema_id,
        schema_type=body.get("schemaType") or "AVRO",
        schema=body["schema"],
        references=tuple(
            SchemaReference(name=r["name"], subject=r["subject"], version=int(r["version"]))
            for r in body.get("references") or ()
        ),
    )
