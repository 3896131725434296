"""The HTTP half of the registry client: one request, and the error its answer means.

Every failure becomes one of `aerogrid.schemas.errors`: connection refused, reset or a
timeout, 5xx and 429 are `RegistryUnavailable` (wait); 401/403 and an untrusted TLS
certificate are `RegistryAuthError` (fix the settings); a 404 for an id or a subject is
`SchemaNotFound`; 409/422 on a registration is `SchemaRejected` with the registry's
reason. Apicurio's answers differ from Confluent's in codes only (a 409 body says
error_code 0; a missing subject's latest version is 40402, Confluent's 40401).

httpx logs every request at INFO ("HTTP Request: GET .../schemas/ids/7 ..."), one line
per new schema id in an app's log; `quiet_request_log` keeps them out (what matters,
an outage or a refusal, the engine logs itself).
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

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

_CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = f"{_CONTENT_TYPE}, application/json"
#: Missing subject (40401; Apicurio's latest version: 40402), version (40402), schema (40403).
_NOT_FOUND_CODES = (40401, 40402, 40403)


#: The logger httpx writes its per-request lines to.
HTTPX_LOGGER = "httpx"


def quiet_request_log() -> None:
    """httpx's per-request INFO lines off (WARNING and up still shown), unless the app's
    logging set the httpx logger's level itself. Idempotent; called when a client is built.
    """
    logger = logging.getLogger(HTTPX_LOGGER)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


class RegistryHttp:
    """An httpx client bound to one registry's base URL, TLS and basic auth."""

    def __init__(
        self,
        settings: RegistrySettings,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.url = settings.url
        self._timeout = timeout
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _httpx(self) -> httpx.AsyncClient:
        if self._client is None:
            quiet_request_log()
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
                # Only our settings: no proxy, netrc or CA bundle taken from the environment
                # (the brokers are reached directly too, and a netrc must not add a password).
                trust_env=False,
            )
        return self._client

    async def request(
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
            response = await self._httpx().request(method, path, json=json, headers=headers)
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
