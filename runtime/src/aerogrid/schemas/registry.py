"""`SchemaRegistry`: the async client of a Confluent-compatible schema registry REST API.

Works with Confluent's registry, Apicurio's `/apis/ccompat/v7`, Karapace and Redpanda.
Built on httpx (already our HTTP client elsewhere) rather than confluent-kafka's
AsyncSchemaRegistryClient (it pulls librdkafka and its own cache and retry rules into
the runtime image) or python-schema-registry-client (retries and error types of its own):
the engine needs exactly four calls, its own error split (`aerogrid.schemas.errors`) and
no retries here, because the pause-and-retry policy lives in the engine, in one place.

Schema ids are immutable, so `schema_by_id` caches forever and asks once per id, even
when many records with a new id arrive at once.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from aerogrid.schemas.errors import (
    RegistryAuthError,
    RegistryUnavailable,
    SchemaNotFound,
    SchemaRegistryError,
    SchemaRejected,
)
from aerogrid.schemas.registry_settings import (
    ENV_CAFILE,
    ENV_PASSWORD,
    ENV_USERNAME,
    RegistrySettings,
)

__all__ = ["RegisteredSchema", "RegistrySettings", "SchemaReference", "SchemaRegistry"]

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = f"{_CONTENT_TYPE}, application/json"
#: Apicurio answers 40402 for a missing subject's latest version; Confluent 40401.
_NOT_FOUND_CODES = (40401, 40402, 40403)


@dataclass(frozen=True)
class SchemaReference:
    """A schema this one imports: its name in the importing schema, subject and version."""

    name: str
    subject: str
    version: int


@dataclass(frozen=True)
class RegisteredSchema:
    """A schema as the registry holds it; `schema_type` is AVRO, PROTOBUF or JSON."""

    schema_id: int
    schema_type: str
    schema: str
    references: tuple[SchemaReference, ...] = ()


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
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._by_id: dict[int, RegisteredSchema] = {}
        self._fetching: dict[int, asyncio.Future[RegisteredSchema]] = {}
        self._ids: dict[tuple[str, str, str, tuple[SchemaReference, ...]], int] = {}

    @property
    def url(self) -> str:
        return self.settings.url

    async def __aenter__(self) -> SchemaRegistry:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def check(self) -> None:
        """One authenticated request (GET /subjects): the registry answers and accepts us."""
        await self._request("GET", "/subjects", what="the subject list")

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
        body = await self._request(
            "GET", f"/schemas/ids/{schema_id}", what=f"schema id {schema_id}", schema_id=schema_id
        )
        registered = RegisteredSchema(
            schema_id=schema_id,
            schema_type=body.get("schemaType") or "AVRO",
            schema=body["schema"],
            references=_references(body.get("references")),
        )
        self._by_id[schema_id] = registered
        return registered

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
        body = await self._request(
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
        body = await self._request(
            "GET",
            f"/subjects/{quote(subject, safe='')}/versions/latest",
            what=f"the latest schema of subject {subject!r}",
        )
        registered = RegisteredSchema(
            schema_id=int(body["id"]),
            schema_type=body.get("schemaType") or "AVRO",
            schema=body["schema"],
            references=_references(body.get("references")),
        )
        self._by_id.setdefault(registered.schema_id, registered)
        return registered

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            settings = self.settings
            verify: ssl.SSLContext | bool = True
            if settings.url.startswith("https:"):
                verify = settings.ssl_context()
            auth = None
            if settings.username and settings.password:
                auth = httpx.BasicAuth(settings.username, settings.password)
            self._client = httpx.AsyncClient(
                base_url=settings.url,
                auth=auth,
                verify=verify,
                timeout=self._timeout,
                headers={"Accept": _ACCEPT},
                transport=self._transport,
                trust_env=False,
            )
        return self._client

    async def _request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json: dict[str, Any] | None = None,
        schema_id: int | None = None,
        subject: str | None = None,
    ) -> Any:
        """The answer's JSON body, or the error its status means (see errors.py)."""
        headers = {"Content-Type": _CONTENT_TYPE} if json is not None else None
        try:
            response = await self._http().request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.url, what) from exc
        status = response.status_code
        if status < 300:
            try:
                return response.json()
            except ValueError:
                raise SchemaRegistryError(
                    f"schema registry {self.url} answered {what} with a body that is not JSON",
                    url=self.url,
                ) from None
        code, message = _error_body(response)
        detail = f"HTTP {status}" + (f" (error {code}: {message})" if message else "")
        if status in (401, 403):
            raise RegistryAuthError(
                f"schema registry {self.url} refused {what}: {detail}; check "
                f"{ENV_USERNAME} and {ENV_PASSWORD}",
                url=self.url,
            )
        if status == 429 or status >= 500:
            raise RegistryUnavailable(
                f"schema registry {self.url} cannot answer {what} now: {detail}", url=self.url
            )
        if status == 404 and (schema_id is not None or code in _NOT_FOUND_CODES):
            raise SchemaNotFound(
                f"schema registry {self.url} has no {what}: {detail}",
                url=self.url,
                schema_id=schema_id,
            )
        if subject is not None and status in (409, 422):
            raise SchemaRejected(
                f"schema registry {self.url} rejected {what}: {detail}",
                url=self.url,
                subject=subject,
                reason=message or detail,
            )
        hint = "; is the URL the Confluent-compatible API (Apicurio: /apis/ccompat/v7)?"
        raise SchemaRegistryError(
            f"schema registry {self.url} refused {what}: {detail}"
            + (hint if status == 404 else ""),
            url=self.url,
        )


def _references(raw: Any) -> tuple[SchemaReference, ...]:
    return tuple(
        SchemaReference(name=r["name"], subject=r["subject"], version=int(r["version"]))
        for r in raw or ()
    )


def _error_body(response: httpx.Response) -> tuple[int | None, str]:
    """(error_code, message) of a registry error answer, as far as it has them."""
    try:
        body = response.json()
    except ValueError:
        return None, response.text[:200].strip()
    if not isinstance(body, dict):
        return None, str(body)[:200]
    code = body.get("error_code")
    return (code if isinstance(code, int) else None), str(body.get("message") or "")


def _transport_error(exc: httpx.TransportError, url: str, what: str) -> SchemaRegistryError:
    """RegistryUnavailable, unless TLS refused the registry's certificate (settings to fix)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return RegistryAuthError(
                f"schema registry {url}: its TLS certificate is not trusted "
                f"({cause.verify_message}); set {ENV_CAFILE}",
                url=url,
            )
        cause = cause.__cause__ or cause.__context__
    reason = str(exc) or type(exc).__name__
    return RegistryUnavailable(f"schema registry {url} unreachable for {what}: {reason}", url=url)
