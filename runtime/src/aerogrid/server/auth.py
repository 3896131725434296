"""Who may call the grid server: static tokens, OIDC JWTs, or anonymous on loopback.

Both transports (gRPC and Connect) pass the raw ``authorization`` value and whether the
peer is on loopback to one `Authenticator`, so the rules and the refusal counters are the
same whichever protocol Excel speaks.

Order of checks for a request:

1. No ``authorization`` at all: a loopback peer gets `LOCAL_CALLER` (every tenant) unless
   anonymous loopback access is disabled; anyone else is refused UNAUTHENTICATED.
2. A header that is present is always checked, even on loopback: a bad token is refused,
   never downgraded to anonymous access.
3. The bearer token is compared with the static tokens file, then, if OIDC is configured
   and the token looks like a JWT, verified against the identity provider's JWKS.

Every refusal increments ``aerogrid_auth_failures_total{reason=...}`` before it is raised.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType

import jwt

from aerogrid.metrics import AUTH_FAILURES
from aerogrid.net import is_loopback_peer
from aerogrid.server.errors import Code, ServiceError
from aerogrid.server.identity import LOCAL_CALLER, Caller
from aerogrid.server.tokens_file import TokenFile

__all__ = [
    "AuthError",
    "AuthSettings",
    "Authenticator",
    "is_loopback",
]

log = logging.getLogger(__name__)

ACCEPTED_ALGORITHMS = ("RS256", "ES256")
"""Asymmetric only: a JWKS holds public keys, so HS* (or `none`) would let anyone sign."""

_MAX_JWKS_BYTES = 1 << 20
_JWKS_FETCH_TIMEOUT_SECONDS = 5.0
_MAX_ECHO_CHARS = 80


class AuthError(ServiceError):
    """A refused request: UNAUTHENTICATED (who are you?) or PERMISSION_DENIED (not yours).

    `reason` is the short, stable label the refusal was counted under; the message is
    meant for the caller and never contains the token.
    """

    def __init__(self, code: Code, message: str, *, reason: str) -> None:
        super().__init__(code, message)
        self.reason = reason


@dataclass(frozen=True)
class AuthSettings:
    """How the server authenticates callers; `from_env` reads it from AEROGRID_* variables.

    OIDC is enabled by a JWKS source (`jwks_url` or `jwks_file`); it then requires both
    `oidc_issuer` and `oidc_audience`, because a JWKS alone does not say which tokens are
    meant for this server (several tenants of one IdP often share signing keys).

    `group_tenants` maps an IdP group (a value of the `groups_claim` claim) to a tenant.
    A group that is not in the map names a tenant of the same name, so IdPs that already
    emit tenant names need no map, and the map only renames (e.g. Azure group object IDs).
    """

    tokens_file: Path | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    jwks_url: str | None = None
    jwks_file: Path | None = None
    groups_claim: str = "groups"
    group_tenants: Mapping[str, str] = field(default_factory=dict, hash=False)
    allow_anonymous_loopback: bool = True
    leeway_seconds: int = 30
    jwks_refetch_seconds: float = 10.0
    """At most one JWKS fetch per this many seconds, so random `kid`s cannot flood the IdP."""
    jwks_max_age_seconds: float = 3600.0
    """Cached keys are refreshed after this long, so keys the IdP withdrew stop working."""

    def __post_init__(self) -> None:
        # Copy, so that a caller mutating its dict cannot change a running server's rules.
        object.__setattr__(self, "group_tenants", MappingProxyType(dict(self.group_tenants)))
        if self.jwks_url is not None and self.jwks_file is not None:
            raise ValueError("set only one of jwks_url and jwks_file")
        if self.jwks_url is not None:
            scheme = urllib.parse.urlsplit(self.jwks_url).scheme
            if scheme not in ("http", "https"):
                raise ValueError(f"jwks_url must be an http(s) URL, not {self.jwks_url!r}")
        if self.oidc_enabled:
            if not self.oidc_issuer:
                raise ValueError("OIDC needs an issuer (AEROGRID_OIDC_ISSUER)")
            if not self.oidc_audience:
                raise ValueError("OIDC needs an audience (AEROGRID_OIDC_AUDIENCE)")
        elif self.oidc_issuer or self.oidc_audience:
            raise ValueError(
                "OIDC issuer/audience are set but there is no JWKS source "
                "(AEROGRID_OIDC_JWKS_URL or AEROGRID_OIDC_JWKS_FILE)"
            )
        if not self.groups_claim:
            raise ValueError("groups_claim must not be empty")
        if self.leeway_seconds < 0:
            raise ValueError("leeway_seconds must not be negative")
        if self.jwks_refetch_seconds < 0 or self.jwks_max_age_seconds <= 0:
            raise ValueError("JWKS refetch interval and max age must be positive")

    @property
    def oidc_enabled(self) -> bool:
        return self.jwks_url is not None or self.jwks_file is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthSettings:
        """Read AEROGRID_AUTH_TOKENS_FILE, AEROGRID_OIDC_* and AEROGRID_REQUIRE_AUTH.

        AEROGRID_GROUP_TENANTS is a JSON object (group → tenant). AEROGRID_REQUIRE_AUTH
        accepts 1/true/yes/on or 0/false/no/off; anything else is an error rather than
        silently leaving anonymous loopback access on.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        tokens_file = get("AEROGRID_AUTH_TOKENS_FILE")
        jwks_file = get("AEROGRID_OIDC_JWKS_FILE")
        group_tenants: dict[str, str] = {}
        raw_map = get("AEROGRID_GROUP_TENANTS")
        if raw_map is not None:
            try:
                parsed = json.loads(raw_map)
            except ValueError as exc:
                raise ValueError(f"AEROGRID_GROUP_TENANTS is not valid JSON: {exc}") from None
            if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in parsed.items()
            ):
                raise ValueError(
                    "AEROGRID_GROUP_TENANTS must be a JSON object of group → tenant strings"
                )
            group_tenants = parsed
        require = (get("AEROGRID_REQUIRE_AUTH") or "0").lower()
        if require not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            raise ValueError(f"AEROGRID_REQUIRE_AUTH must be 1 or 0, not {require!r}")
        return cls(
            tokens_file=Path(tokens_file) if tokens_file else None,
            oidc_issuer=get("AEROGRID_OIDC_ISSUER"),
            oidc_audience=get("AEROGRID_OIDC_AUDIENCE"),
            jwks_url=get("AEROGRID_OIDC_JWKS_URL"),
            jwks_file=Path(jwks_file) if jwks_file else None,
            groups_claim=get("AEROGRID_OIDC_GROUPS_CLAIM") or "groups",
            group_tenants=group_tenants,
            allow_anonymous_loopback=require in ("0", "false", "no", "off"),
        )


def is_loopback(peer: str) -> bool:
    """Whether a peer address is this machine: loopback IPs and Unix sockets.

    The one definition is `aerogrid.net.is_loopback_peer` (gRPC peer strings, plain
    addresses). Pass only the address the socket reported, never a Host or
    X-Forwarded-For header: the client writes those. Behind a reverse proxy on the same
    host every peer is loopback, so such deployments must set AEROGRID_REQUIRE_AUTH=1.
    """
    return is_loopback_peer(peer)


class Authenticator:
    """Turns an ``authorization`` value into a `Caller`, or raises `AuthError`.

    Build one per server from `AuthSettings`; it loads the tokens file now (a broken file
    stops the server from starting) and fetches the JWKS lazily on the first JWT.

    `tenants_of_group`, when given, is asked for each group of every JWT at the time of
    the call, and the tenants it names are added to the settings' (`group_tenants`): a
    server that follows a changing map (the cluster's catalog, from the Tenant resources)
    passes its live view here, so a group added or removed counts without a restart; its
    JWT callers then carry `Caller.live_tenants`, for the calls that outlast a change.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        tenants_of_group: Callable[[str], Iterable[str]] | None = None,
    ) -> None:
        self._settings = settings
        self._tenants_of_group = tenants_of_group
        self._tokens = TokenFile(settings.tokens_file) if settings.tokens_file else None
        self._jwks: _JwksCache | None = None
        if settings.jwks_url is not None:
            url = settings.jwks_url
            self._jwks = _JwksCache(
                lambda: asyncio.to_thread(_fetch_url, url),
                source=url,
                refetch_seconds=settings.jwks_refetch_seconds,
                max_age_seconds=settings.jwks_max_age_seconds,
            )
        elif settings.jwks_file is not None:
            path = settings.jwks_file
            self._jwks = _JwksCache(
                lambda: asyncio.to_thread(path.read_bytes),
                source=str(path),
                refetch_seconds=settings.jwks_refetch_seconds,
                max_age_seconds=settings.jwks_max_age_seconds,
            )
        if self._tokens is None and self._jwks is None:
            if settings.allow_anonymous_loopback:
                log.info("no tokens file and no OIDC: only anonymous loopback callers get in")
            else:
                log.warning("no tokens file, no OIDC and no anonymous access: nobody gets in")

    async def authenticate(self, authorization: str | None, *, peer_is_loopback: bool) -> Caller:
        """Who the caller is; raises `AuthError` (already counted) when it is refused."""
        token = self._bearer_token(authorization)
        if token is None:
            if peer_is_loopback and self._settings.allow_anonymous_loopback:
                return LOCAL_CALLER
            raise _refuse(
                Code.UNAUTHENTICATED,
                "missing",
                "missing bearer token: send 'authorization: Bearer <token>'",
            )
        if self._tokens is not None:
            entry = self._tokens.lookup(token)
            if entry is not None:
                return _caller(entry.subject, entry.tenants)
        if self._jwks is not None and token.count(".") == 2:
            return await self._verify_jwt(self._jwks, token)
        raise _refuse(Code.UNAUTHENTICATED, "unknown_token", "unknown token")

    @staticmethod
    def _bearer_token(authorization: str | None) -> str | None:
        """The token of "Bearer <token>"; None when there is no header at all."""
        if authorization is None or not authorization.strip():
            return None
        parts = authorization.split()
        if parts[0].lower() != "bearer":
            raise _refuse(
                Code.UNAUTHENTICATED,
                "malformed",
                "authorization must be 'Bearer <token>' (other schemes are not supported)",
            )
        if len(parts) != 2:
            raise _refuse(
                Code.UNAUTHENTICATED, "malformed", "authorization must be 'Bearer <token>'"
            )
        return parts[1]

    async def _verify_jwt(self, jwks: _JwksCache, token: str) -> Caller:
        settings = self._settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise _refuse(Code.UNAUTHENTICATED, "malformed", "token is not a valid JWT") from None
        alg = header.get("alg")
        if alg not in ACCEPTED_ALGORITHMS:
            raise _refuse(
                Code.UNAUTHENTICATED,
                "bad_signature",
                f"token algorithm {_clip(alg)} is not accepted (only RS256 and ES256)",
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refuse(Code.UNAUTHENTICATED, "malformed", "token 'kid' is not a string")
        try:
            key = await jwks.key_for(kid)
        except _JwksUnavailable:
            raise _refuse(
                Code.UNAUTHENTICATED,
                "jwks_unavailable",
                "cannot check the token: the identity provider's signing keys (JWKS) "
                "are unavailable",
            ) from None
        if key is None:
            raise _refuse(
                Code.UNAUTHENTICATED,
                "bad_signature",
                f"token is signed by an unknown key (kid {_clip(kid)})"
                if kid is not None
                else "token has no 'kid' and the identity provider has several keys",
            )
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=list(ACCEPTED_ALGORITHMS),
                issuer=settings.oidc_issuer,
                audience=settings.oidc_audience,
                leeway=settings.leeway_seconds,
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise _refuse(Code.UNAUTHENTICATED, "expired", "token expired") from None
        except jwt.ImmatureSignatureError:
            raise _refuse(
                Code.UNAUTHENTICATED, "not_yet_valid", "token is not valid yet (nbf/iat)"
            ) from None
        except jwt.InvalidAudienceError:
            # The signature was checked before the claims, so the claims are genuine.
            aud = _unverified_claim(token, "aud")
            raise _refuse(
                Code.UNAUTHENTICATED,
                "bad_audience",
                f"token audience {_clip(aud)} does not match {settings.oidc_audience!r}",
            ) from None
        except jwt.InvalidIssuerError:
            iss = _unverified_claim(token, "iss")
            raise _refuse(
                Code.UNAUTHENTICATED,
                "bad_issuer",
                f"token issuer {_clip(iss)} does not match {settings.oidc_issuer!r}",
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            reason = {"aud": "bad_audience", "iss": "bad_issuer"}.get(exc.claim, "malformed")
            raise _refuse(
                Code.UNAUTHENTICATED, reason, f"token has no {exc.claim!r} claim"
            ) from None
        except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError, jwt.InvalidKeyError):
            raise _refuse(
                Code.UNAUTHENTICATED, "bad_signature", "token signature is not valid"
            ) from None
        except jwt.PyJWTError:
            raise _refuse(Code.UNAUTHENTICATED, "malformed", "token is not a valid JWT") from None
        groups = _group_names(claims.get(settings.groups_claim))
        live = None if self._tenants_of_group is None else partial(self._tenants, groups)
        return _caller(claims["sub"], self._tenants(groups), live)

    def _tenants(self, groups: tuple[str, ...]) -> frozenset[str]:
        """The tenants of a JWT's groups, as the settings and the live view say now."""
        mapping = self._settings.group_tenants
        tenants = {mapping.get(g, g) for g in groups}
        if self._tenants_of_group is not None:
            for group in groups:
                tenants.update(self._tenants_of_group(group))
        return frozenset(tenants)


def _group_names(groups: object) -> tuple[str, ...]:
    """The group names of a groups claim (a list of strings, or one string)."""
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return ()
    return tuple(g for g in groups if isinstance(g, str) and g)


def _caller(
    subject: str,
    tenants: frozenset[str],
    live_tenants: Callable[[], frozenset[str]] | None = None,
) -> Caller:
    """A tenant-scoped caller; an authenticated caller with no tenant may see nothing."""
    if not tenants:
        raise _refuse(Code.PERMISSION_DENIED, "no_tenant", "caller belongs to no tenant")
    return Caller(subject=subject, tenants=tenants, live_tenants=live_tenants)


def _refuse(code: Code, reason: str, message: str) -> AuthError:
    """Count a refusal and build its error, so no refusal path can forget the counter."""
    AUTH_FAILURES.labels(reason=reason).inc()
    log.debug("refused caller (%s): %s", reason, message)
    return AuthError(code, message, reason=reason)


def _clip(value: object) -> str:
    """A caller-supplied value, quoted and shortened, for an error message."""
    text = repr(value)
    return text if len(text) <= _MAX_ECHO_CHARS else text[: _MAX_ECHO_CHARS - 3] + "..."


def _unverified_claim(token: str, claim: str) -> object:
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    return payload.get(claim)


# --- JWKS --------------------------------------------------------------------------------


class _JwksUnavailable(Exception):
    """No signing keys could be loaded from the JWKS source."""


def _fetch_url(url: str) -> bytes:
    """GET a JWKS document (blocking; run in a thread)."""
    request = urllib.request.Request(
        url, headers={"Accept": "application/json", "User-Agent": "aerogrid"}
    )
    with urllib.request.urlopen(request, timeout=_JWKS_FETCH_TIMEOUT_SECONDS) as response:
        body: bytes = response.read(_MAX_JWKS_BYTES + 1)
    if len(body) > _MAX_JWKS_BYTES:
        raise ValueError(f"JWKS document is larger than {_MAX_JWKS_BYTES} bytes")
    return body


def _parse_jwks(document: bytes) -> list[jwt.PyJWK]:
    """The usable signing keys of a JWKS: RS256/ES256 keys not marked for encryption."""
    data = json.loads(document)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' list)")
    keys = []
    for item in data["keys"]:
        if not isinstance(item, dict) or item.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(item)
        except jwt.PyJWTError as exc:
            log.debug("skipping JWKS key %r: %s", item.get("kid"), exc)
            continue
        if key.algorithm_name in ACCEPTED_ALGORITHMS:
            keys.append(key)
    if not keys:
        raise ValueError("JWKS has no RS256 or ES256 signing key")
    return keys


class _JwksCache:
    """Signing keys by `kid`, fetched lazily, refreshed when old or on an unknown `kid`.

    Fetches (successful or not) happen at most once per `refetch_seconds`, and one at a
    time: concurrent requests wait for the fetch in progress instead of starting their own.
    When a refresh fails, the keys already known keep working.
    """

    def __init__(
        self,
        fetch: Callable[[], Awaitable[bytes]],
        *,
        source: str,
        refetch_seconds: float,
        max_age_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._source = source
        self._refetch_seconds = refetch_seconds
        self._max_age_seconds = max_age_seconds
        self._clock = clock
        self._keys: list[jwt.PyJWK] | None = None
        self._by_kid: dict[str, jwt.PyJWK] = {}
        self._loaded_at = 0.0
        self._attempted_at: float | None = None
        self._last_fetch_failed = False
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for `kid` (the only key when the token has none), or None if unknown.

        Raises `_JwksUnavailable` when no key could ever be loaded, or when the `kid` is
        unknown and the latest attempt to refresh the keys failed.
        """
        if self._fresh():
            key = self._lookup(kid)
            if key is not None:
                return key
        async with self._lock:
            # Another request may have refreshed the keys while this one waited.
            key = self._lookup(kid) if self._fresh() else None
            if key is None and self._may_fetch():
                await self._refresh()
                key = self._lookup(kid)
            elif key is None:
                key = self._lookup(kid)  # possibly stale, but better than nothing
            if key is None and (self._keys is None or self._last_fetch_failed):
                raise _JwksUnavailable(self._source)
            return key

    def _fresh(self) -> bool:
        return self._keys is not None and (self._clock() - self._loaded_at < self._max_age_seconds)

    def _may_fetch(self) -> bool:
        return (
            self._attempted_at is None
            or self._clock() - self._attempted_at >= self._refetch_seconds
        )

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if self._keys is None:
            return None
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return self._by_kid.get(kid)

    async def _refresh(self) -> None:
        self._attempted_at = self._clock()
        try:
            keys = _parse_jwks(await self._fetch())
        # URLError, HTTPError and timeouts are OSErrors; a bad document is a ValueError.
        except (OSError, ValueError, RecursionError, http.client.HTTPException) as exc:
            self._last_fetch_failed = True
            log.warning("cannot load JWKS from %s: %s", self._source, exc)
            return
        self._keys = keys
        self._by_kid = {k.key_id: k for k in keys if k.key_id is not None}
        self._loaded_at = self._clock()
        self._last_fetch_failed = False
        log.info("loaded %d signing keys from %s", len(keys), self._source)
