"""Authentication of grid-server callers: anonymous loopback, static tokens, OIDC JWTs."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from aerogrid.metrics import REGISTRY
from aerogrid.server.auth import Authenticator, AuthError, AuthSettings, is_loopback
from aerogrid.server.errors import Code
from aerogrid.server.identity import LOCAL_CALLER, Caller

ISSUER = "https://idp.example.test/realms/desk"
AUDIENCE = "aerogrid"
REASONS = (
    "missing",
    "malformed",
    "unknown_token",
    "expired",
    "not_yet_valid",
    "bad_signature",
    "bad_audience",
    "bad_issuer",
    "no_tenant",
    "jwks_unavailable",
)

# --- keys and tokens ---------------------------------------------------------------------


@dataclass
class Key:
    kid: str
    alg: str
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            data = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            data = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**data, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, overrides: dict[str, Any] | None = None, *, kid: str | None = None) -> str:
        """A token for alice in groups desk-a and desk-b, valid for 5 minutes."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "iat": now,
            "exp": now + 300,
            "groups": ["desk-a", "desk-b"],
        }
        for name, value in (overrides or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": kid or self.kid}
        )


def rsa_key(kid: str) -> Key:
    return Key(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> Key:
    return Key(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A hand-made JWT: unsigned (alg none) or HMAC-signed with `secret`."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def valid_claims() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": now + 300, "groups": ["x"]}


@pytest.fixture(scope="module")
def rsa_a() -> Key:
    return rsa_key("rsa-a")


@pytest.fixture(scope="module")
def ec_b() -> Key:
    return ec_key("ec-b")


# --- a real JWKS endpoint -----------------------------------------------------------------


@dataclass
class JwksServer:
    """A JWKS served over HTTP on 127.0.0.1 from a thread; `keys` can change (rotation)."""

    keys: list[Key]
    hits: int = 0
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def document(self) -> bytes:
        with self.lock:
            self.hits += 1
            return json.dumps({"keys": [k.jwk() for k in self.keys]}).encode()


@pytest.fixture
def jwks(rsa_a: Key, ec_b: Key, monkeypatch: pytest.MonkeyPatch) -> Iterator[JwksServer]:
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    state = JwksServer(keys=[rsa_a, ec_b])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/certs":
                self.send_error(404)
                return
            body = state.document()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/certs"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def oidc(url: str, **changes: Any) -> AuthSettings:
    settings = AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, jwks_url=url)
    return replace(settings, **changes)


# --- counting refusals -------------------------------------------------------------------


def failures() -> dict[str, float]:
    return {
        reason: REGISTRY.get_sample_value("aerogrid_auth_failures_total", {"reason": reason}) or 0.0
        for reason in REASONS
    }


async def refused(call: Awaitable[Caller], code: Code, reason: str) -> AuthError:
    """Await a refused call; check its code and that exactly its reason was counted once."""
    before = failures()
    with pytest.raises(AuthError) as info:
        await call
    after = failures()
    assert info.value.code == code, info.value.message
    assert info.value.reason == reason, info.value.message
    assert {r: after[r] - before[r] for r in REASONS if after[r] != before[r]} == {reason: 1.0}
    return info.value


def bearer(token: str) -> str:
    return f"Bearer {token}"


# --- anonymous loopback ------------------------------------------------------------------


async def test_anonymous_on_loopback_is_the_local_caller() -> None:
    auth = Authenticator(AuthSettings())
    assert await auth.authenticate(None, peer_is_loopback=True) is LOCAL_CALLER
    assert await auth.authenticate("  ", peer_is_loopback=True) is LOCAL_CALLER


async def test_anonymous_refused_when_auth_is_required() -> None:
    auth = Authenticator(AuthSettings(allow_anonymous_loopback=False))
    error = await refused(
        auth.authenticate(None, peer_is_loopback=True), Code.UNAUTHENTICATED, "missing"
    )
    assert "missing bearer token" in error.message


async def test_anonymous_refused_off_loopback() -> None:
    auth = Authenticator(AuthSettings())
    await refused(auth.authenticate(None, peer_is_loopback=False), Code.UNAUTHENTICATED, "missing")


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer a b"])
async def test_malformed_header_is_refused_even_on_loopback(header: str) -> None:
    auth = Authenticator(AuthSettings())
    await refused(
        auth.authenticate(header, peer_is_loopback=True), Code.UNAUTHENTICATED, "malformed"
    )


# --- static tokens -----------------------------------------------------------------------


def write_tokens(path: Path, tokens: dict[str, dict[str, Any]], *, mtime_ns: int) -> None:
    if path.suffix == ".json":
        path.write_text(json.dumps(tokens))
    else:
        lines = []
        for token, entry in tokens.items():
            lines += [f'["{token}"]', f'subject = "{entry["subject"]}"']
            lines.append("tenants = [" + ", ".join(f'"{t}"' for t in entry["tenants"]) + "]")
        path.write_text("\n".join(lines) + "\n")
    os.utime(path, ns=(mtime_ns, mtime_ns))


@pytest.mark.parametrize("suffix", [".json", ".toml"])
async def test_static_token(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"tokens{suffix}"
    write_tokens(
        path,
        {
            "tok-alice": {"subject": "alice", "tenants": ["desk-a", "desk-b"]},
            "tok-nobody": {"subject": "nobody", "tenants": []},
        },
        mtime_ns=1_000_000_000,
    )
    auth = Authenticator(AuthSettings(tokens_file=path))

    caller = await auth.authenticate(bearer("tok-alice"), peer_is_loopback=False)
    assert caller == Caller("alice", frozenset({"desk-a", "desk-b"}))
    assert caller.may_see("desk-a")
    assert not caller.may_see("desk-c")
    # The scheme is case-insensitive, and a token is checked on loopback too.
    assert await auth.authenticate("bearer tok-alice", peer_is_loopback=True) == caller

    error = await refused(
        auth.authenticate(bearer("tok-mallory"), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "unknown_token",
    )
    assert "tok-mallory" not in error.message
    await refused(
        auth.authenticate(bearer("tok-nobody"), peer_is_loopback=False),
        Code.PERMISSION_DENIED,
        "no_tenant",
    )


async def test_tokens_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, {"tok-1": {"subject": "a", "tenants": ["t1"]}}, mtime_ns=1_000_000_000)
    auth = Authenticator(AuthSettings(tokens_file=path))
    assert await auth.authenticate(bearer("tok-1"), peer_is_loopback=False) == Caller(
        "a", frozenset({"t1"})
    )

    write_tokens(path, {"tok-2": {"subject": "b", "tenants": ["t2"]}}, mtime_ns=2_000_000_000)
    await refused(
        auth.authenticate(bearer("tok-1"), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "unknown_token",
    )
    assert await auth.authenticate(bearer("tok-2"), peer_is_loopback=False) == Caller(
        "b", frozenset({"t2"})
    )

    # A broken edit keeps the previous tokens rather than locking everyone out.
    path.write_text("{not json")
    os.utime(path, ns=(3_000_000_000, 3_000_000_000))
    assert await auth.authenticate(bearer("tok-2"), peer_is_loopback=False) == Caller(
        "b", frozenset({"t2"})
    )

    # A deleted file means no static token is accepted any more.
    path.unlink()
    await refused(
        auth.authenticate(bearer("tok-2"), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "unknown_token",
    )


def test_tokens_file_errors_at_startup_do_not_echo_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps({"tok-secret": {"subject": "a", "tenants": "t1"}}))
    with pytest.raises(ValueError, match="'tenants' must be a list") as info:
        Authenticator(AuthSettings(tokens_file=path))
    assert "tok-secret" not in str(info.value)

    with pytest.raises(ValueError, match="does not exist"):
        Authenticator(AuthSettings(tokens_file=tmp_path / "missing.json"))
    (tmp_path / "tokens.yaml").write_text("{}")
    with pytest.raises(ValueError, match=r"\.json or \.toml"):
        Authenticator(AuthSettings(tokens_file=tmp_path / "tokens.yaml"))


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"subject": "bob", "tenants": ["desk-a", ""]},
            "entry 2 (bob): 'tenants' must be a list of strings "
            "(tenants[1]: expected `str` of length >= 1)",
        ),
        (
            {"subject": "bob", "tenants": "desk-a"},
            "entry 2 (bob): 'tenants' must be a list of strings (tenants: expected `array`",
        ),
        (
            {"subject": "", "tenants": []},
            "entry 2: 'subject' must be a non-empty string (subject: expected `str` of length",
        ),
        (
            {"subject": "bob"},
            "entry 2: must be a table with 'subject' and 'tenants' "
            "(Object missing required field `tenants`)",
        ),
        ("bob", "entry 2: must be a table with 'subject' and 'tenants' (Expected `object`"),
    ],
    ids=["tenant", "tenants", "subject", "missing", "entry"],
)
@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_tokens_file_errors_name_the_entry_and_the_field(
    tmp_path: Path, suffix: str, entry: object, message: str
) -> None:
    path = tmp_path / f"tokens{suffix}"
    tokens = {"tok-ok": {"subject": "alice", "tenants": ["desk-a"]}, "tok-secret": entry}
    if suffix == ".json":
        path.write_text(json.dumps(tokens))
    else:  # inline tables; a JSON string or list of strings is TOML too
        path.write_text("".join(f'"{token}" = {toml_value(v)}\n' for token, v in tokens.items()))
    with pytest.raises(ValueError) as info:
        Authenticator(AuthSettings(tokens_file=path))
    assert str(info.value).startswith(f"tokens file {path}, {message}")
    assert "tok-secret" not in str(info.value)


# --- OIDC JWTs ---------------------------------------------------------------------------


async def test_jwt_groups_name_tenants(jwks: JwksServer, rsa_a: Key, ec_b: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    expected = Caller("alice", frozenset({"desk-a", "desk-b"}))
    assert await auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False) == expected
    assert await auth.authenticate(bearer(ec_b.sign()), peer_is_loopback=False) == expected
    assert jwks.hits == 1  # keys are cached


async def test_jwt_groups_mapped_to_tenants(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url, groups_claim="roles", group_tenants={"g-1234": "desk-a"}))
    token = rsa_a.sign({"groups": None, "roles": ["g-1234", "desk-z"]})
    caller = await auth.authenticate(bearer(token), peer_is_loopback=False)
    # A mapped group is renamed; an unmapped one names the tenant of the same name.
    assert caller == Caller("alice", frozenset({"desk-a", "desk-z"}))
    assert caller.current() is caller  # no live view: its tenants cannot change


async def test_jwt_groups_from_a_live_view(jwks: JwksServer, rsa_a: Key) -> None:
    """The catalog's view of the Tenants' groups: asked at each call, so a change counts at
    once; a group may belong to several tenants, and still names its namesake."""
    live: dict[str, set[str]] = {"desk-a": {"trading", "risk"}}
    auth = Authenticator(
        oidc(jwks.url, group_tenants={"desk-b": "sales"}),
        tenants_of_group=lambda group: live.get(group, set()),
    )
    token = bearer(rsa_a.sign())  # groups desk-a, desk-b
    caller = await auth.authenticate(token, peer_is_loopback=False)
    assert caller == Caller("alice", frozenset({"desk-a", "trading", "risk", "sales"}))
    live["desk-a"] = {"risk"}
    live["desk-b"] = {"ops"}
    # A caller authenticated before the change (an open stream's) asks the view again.
    assert caller.current() == Caller("alice", frozenset({"desk-a", "risk", "sales", "ops"}))
    caller = await auth.authenticate(token, peer_is_loopback=False)
    assert caller == Caller("alice", frozenset({"desk-a", "risk", "sales", "ops"}))


async def test_jwt_single_group_string(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    caller = await auth.authenticate(
        bearer(rsa_a.sign({"groups": "desk-a"})), peer_is_loopback=False
    )
    assert caller == Caller("alice", frozenset({"desk-a"}))


async def test_jwt_static_tokens_and_oidc_together(
    jwks: JwksServer, rsa_a: Key, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.json"
    write_tokens(path, {"tok-bot": {"subject": "bot", "tenants": ["t"]}}, mtime_ns=10**9)
    auth = Authenticator(oidc(jwks.url, tokens_file=path))
    assert (await auth.authenticate(bearer("tok-bot"), peer_is_loopback=False)).subject == "bot"
    assert (await auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False)).subject == (
        "alice"
    )
    await refused(
        auth.authenticate(bearer("not-a-jwt"), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "unknown_token",
    )


async def test_jwt_without_oidc_is_an_unknown_token(rsa_a: Key) -> None:
    auth = Authenticator(AuthSettings())
    await refused(
        auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=True),
        Code.UNAUTHENTICATED,
        "unknown_token",
    )


async def test_jwt_expired(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url, leeway_seconds=30))
    now = int(time.time())
    # Within the leeway a token still passes (clock skew between IdP and server).
    assert await auth.authenticate(
        bearer(rsa_a.sign({"exp": now - 10, "iat": now - 310})), peer_is_loopback=False
    )
    error = await refused(
        auth.authenticate(
            bearer(rsa_a.sign({"exp": now - 120, "iat": now - 420})), peer_is_loopback=False
        ),
        Code.UNAUTHENTICATED,
        "expired",
    )
    assert error.message == "token expired"
    await refused(
        auth.authenticate(bearer(rsa_a.sign({"exp": None})), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "malformed",
    )


async def test_jwt_not_yet_valid(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    await refused(
        auth.authenticate(
            bearer(rsa_a.sign({"nbf": int(time.time()) + 600})), peer_is_loopback=False
        ),
        Code.UNAUTHENTICATED,
        "not_yet_valid",
    )


async def test_jwt_wrong_audience(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    error = await refused(
        auth.authenticate(bearer(rsa_a.sign({"aud": "other-app"})), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_audience",
    )
    assert error.message == "token audience 'other-app' does not match 'aerogrid'"
    await refused(
        auth.authenticate(bearer(rsa_a.sign({"aud": None})), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_audience",
    )


async def test_jwt_wrong_issuer(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    error = await refused(
        auth.authenticate(
            bearer(rsa_a.sign({"iss": "https://evil.example.test"})), peer_is_loopback=False
        ),
        Code.UNAUTHENTICATED,
        "bad_issuer",
    )
    assert "does not match" in error.message


async def test_jwt_signed_by_another_key(jwks: JwksServer) -> None:
    auth = Authenticator(oidc(jwks.url))
    impostor = rsa_key("rsa-a")  # claims the kid of a trusted key
    await refused(
        auth.authenticate(bearer(impostor.sign()), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_signature",
    )


async def test_jwt_alg_none_refused(jwks: JwksServer) -> None:
    auth = Authenticator(oidc(jwks.url))
    token = unsigned_jwt({"alg": "none", "typ": "JWT", "kid": "rsa-a"}, valid_claims(), None)
    error = await refused(
        auth.authenticate(bearer(token), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_signature",
    )
    assert "'none' is not accepted" in error.message


async def test_jwt_hs256_with_public_key_refused(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    # The classic key-confusion attack: HMAC-sign with the (public) verification key.
    for secret in (rsa_a.public_pem(), json.dumps(rsa_a.jwk()).encode()):
        token = unsigned_jwt({"alg": "HS256", "typ": "JWT", "kid": "rsa-a"}, valid_claims(), secret)
        await refused(
            auth.authenticate(bearer(token), peer_is_loopback=False),
            Code.UNAUTHENTICATED,
            "bad_signature",
        )


async def test_jwt_alg_must_match_the_key(jwks: JwksServer, rsa_a: Key, ec_b: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    # An RS256 token naming the EC key's kid.
    await refused(
        auth.authenticate(bearer(rsa_a.sign(kid=ec_b.kid)), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_signature",
    )


async def test_jwt_with_no_tenant_is_permission_denied(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    groups: object
    for groups in ([], None, {"not": "a list"}, [""]):  # None: no groups claim at all
        token = rsa_a.sign({"groups": groups})
        error = await refused(
            auth.authenticate(bearer(token), peer_is_loopback=False),
            Code.PERMISSION_DENIED,
            "no_tenant",
        )
        assert error.message == "caller belongs to no tenant"


async def test_malformed_jwt(jwks: JwksServer) -> None:
    auth = Authenticator(oidc(jwks.url))
    await refused(
        auth.authenticate(bearer("aaa.bbb.ccc"), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "malformed",
    )


# --- JWKS fetching -----------------------------------------------------------------------


async def test_unknown_kid_refetches_once(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url, jwks_refetch_seconds=0.5))
    assert await auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False)
    assert jwks.hits == 1

    # The IdP rotates to a new key; the first token signed with it triggers one refetch.
    rotated = rsa_key("rsa-rotated")
    jwks.keys = [rotated]
    await asyncio.sleep(0.6)
    caller = await auth.authenticate(bearer(rotated.sign()), peer_is_loopback=False)
    assert caller.subject == "alice"
    assert jwks.hits == 2

    # Unknown kids right after a fetch do not hit the IdP again, however many arrive.
    strangers = [rsa_key(f"stranger-{i}").sign() for i in range(3)]
    for token in strangers:
        await refused(
            auth.authenticate(bearer(token), peer_is_loopback=False),
            Code.UNAUTHENTICATED,
            "bad_signature",
        )
    assert jwks.hits == 2
    # The withdrawn key is gone once the keys were refetched.
    await refused(
        auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "bad_signature",
    )


async def test_concurrent_requests_share_one_fetch(jwks: JwksServer, rsa_a: Key) -> None:
    auth = Authenticator(oidc(jwks.url))
    callers = await asyncio.gather(
        *(auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False) for _ in range(8))
    )
    assert {c.subject for c in callers} == {"alice"}
    assert jwks.hits == 1


async def test_jwks_server_down(rsa_a: Key) -> None:
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auth = Authenticator(oidc(f"http://127.0.0.1:{port}/certs"))
    error = await refused(
        auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "jwks_unavailable",
    )
    assert "JWKS" in error.message


async def test_jwks_file(tmp_path: Path, rsa_a: Key, ec_b: Key) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [rsa_a.jwk()]}))
    auth = Authenticator(AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, jwks_file=path))
    assert await auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False)
    # A kid signed without one: the only key in the set is used.
    no_kid = jwt.encode(
        {"iss": ISSUER, "aud": AUDIENCE, "sub": "bob", "exp": int(time.time()) + 60, "groups": "t"},
        rsa_a.private,
        algorithm="RS256",
    )
    assert (await auth.authenticate(bearer(no_kid), peer_is_loopback=False)).subject == "bob"
    # The HMAC or unusable keys of a set are ignored, never used to verify.
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}))
    auth = Authenticator(AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, jwks_file=path))
    await refused(
        auth.authenticate(bearer(rsa_a.sign()), peer_is_loopback=False),
        Code.UNAUTHENTICATED,
        "jwks_unavailable",
    )


# --- settings ----------------------------------------------------------------------------


def test_settings_from_env(tmp_path: Path) -> None:
    settings = AuthSettings.from_env(
        {
            "AEROGRID_AUTH_TOKENS_FILE": str(tmp_path / "t.toml"),
            "AEROGRID_OIDC_ISSUER": ISSUER,
            "AEROGRID_OIDC_AUDIENCE": AUDIENCE,
            "AEROGRID_OIDC_JWKS_URL": "https://idp.example.test/certs",
            "AEROGRID_OIDC_GROUPS_CLAIM": "roles",
            "AEROGRID_GROUP_TENANTS": '{"g1": "desk-a"}',
            "AEROGRID_REQUIRE_AUTH": "1",
        }
    )
    assert settings.tokens_file == tmp_path / "t.toml"
    assert settings.jwks_url == "https://idp.example.test/certs"
    assert settings.groups_claim == "roles"
    assert dict(settings.group_tenants) == {"g1": "desk-a"}
    assert settings.allow_anonymous_loopback is False

    defaults = AuthSettings.from_env({})
    assert defaults == AuthSettings()
    assert defaults.allow_anonymous_loopback is True

    with pytest.raises(ValueError, match="AEROGRID_GROUP_TENANTS"):
        AuthSettings.from_env({"AEROGRID_GROUP_TENANTS": '["g1"]'})
    with pytest.raises(ValueError, match="AEROGRID_REQUIRE_AUTH"):
        AuthSettings.from_env({"AEROGRID_REQUIRE_AUTH": "maybe"})


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="audience"):
        AuthSettings(oidc_issuer=ISSUER, jwks_url="https://idp.example.test/certs")
    with pytest.raises(ValueError, match="issuer"):
        AuthSettings(oidc_audience=AUDIENCE, jwks_url="https://idp.example.test/certs")
    with pytest.raises(ValueError, match="no JWKS source"):
        AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE)
    with pytest.raises(ValueError, match="http"):
        AuthSettings(oidc_issuer=ISSUER, oidc_audience=AUDIENCE, jwks_url="file:///etc/jwks")


# --- loopback ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", True),
        ("ipv4:127.1.2.3:5555", True),
        ("ipv6:[::1]:5555", True),
        ("ipv6:%5B::1%5D:5555", True),
        ("ipv6:[::ffff:127.0.0.1]:5555", True),
        ("unix:/tmp/aerogrid.sock", True),
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]:8080", True),
        ("localhost", True),
        ("ipv4:10.0.0.7:5555", False),
        ("ipv6:[2001:db8::1]:5555", False),
        ("ipv6:[::ffff:10.0.0.7]:5555", False),
        ("192.168.1.20", False),
        ("localhost.evil.example", False),
        ("", False),
        ("garbage", False),
    ],
)
def test_is_loopback(peer: str, expected: bool) -> None:
    assert is_loopback(peer) is expected
