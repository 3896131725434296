"""A tiny OIDC issuer on loopback, so the real registry's own authentication can run in tests.

Apicurio Registry 2.4 checks HTTP basic credentials only through OIDC: it exchanges them for a
token at the issuer's token endpoint (client-credentials grant: user = client id, password = client
secret) and validates that token (RS256, the issuer's JWKS) with Quarkus OIDC. This issuer serves
just that: discovery, JWKS and the token endpoint, for a fixed set of clients; a wrong secret gets
`401 invalid_client`, which the registry turns into a 401 for the caller. It is not a general OIDC
server (no users, no refresh, no login pages).
"""

from __future__ import annotations

import json
import time
import uuid
from base64 import b64decode
from collections.abc import Mapping
from urllib.parse import parse_qs

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from aerogrid.net import LOOPBACK_HOST
from support.http_thread import HttpThread, QuietLog

__all__ = ["OidcIssuer"]

TOKEN_LIFETIME = 300


class OidcIssuer:
    """Issuer at `issuer` (http://127.0.0.1:PORT/realms/test); `start()` / `stop()`."""

    def __init__(self, clients: Mapping[str, str]) -> None:
        self.clients = dict(clients)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._kid = uuid.uuid4().hex
        self.tokens_issued = 0
        self.refusals = 0
        self._http = HttpThread(LOOPBACK_HOST, self._handler(), "oidc-issuer")

    @property
    def issuer(self) -> str:
        return f"{self._http.base_url}/realms/test"

    @property
    def token_endpoint(self) -> str:
        return self.issuer + "/protocol/openid-connect/token"

    def start(self) -> None:
        self._http.start()

    def stop(self) -> None:
        self._http.stop()

    def discovery(self) -> dict[str, object]:
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_endpoint,
            "jwks_uri": self.issuer + "/protocol/openid-connect/certs",
            "grant_types_supported": ["client_credentials"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }

    def jwks(self) -> dict[str, object]:
        public = RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "use": "sig", "alg": "RS256", "kid": self._kid}]}

    def token(self, form: Mapping[str, str], authorization: str | None) -> dict[str, object] | None:
        """An access token for valid client credentials (form fields or basic), else None."""
        client_id, secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            client_id, _, secret = b64decode(authorization[6:]).decode().partition(":")
        if form.get("grant_type") != "client_credentials" or client_id is None:
            return None
        if self.clients.get(client_id) != secret:
            self.refusals += 1
            return None
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": client_id,
            "aud": "registry-api",
            "azp": client_id,
            "typ": "Bearer",
            "preferred_username": client_id,
            "iat": now,
            "exp": now + TOKEN_LIFETIME,
            "jti": uuid.uuid4().hex,
        }
        self.tokens_issued += 1
        return {"access_token": self._sign(claims), "token_type": "Bearer", "expires_in": 300}

    def _sign(self, claims: Mapping[str, object]) -> str:
        return jwt.encode(dict(claims), self._key, "RS256", headers={"kid": self._kid})

    def _handler(self) -> type[QuietLog]:
        issuer = self

        class Handler(QuietLog):  # quiet: the registry's own log says what it did
            def _answer(self, status: int, body: Mapping[str, object]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/realms/test/.well-known/openid-configuration":
                    self._answer(200, issuer.discovery())
                elif path == "/realms/test/protocol/openid-connect/certs":
                    self._answer(200, issuer.jwks())
                else:
                    self._answer(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                fields = parse_qs(self.rfile.read(length).decode())
                form = {name: values[0] for name, values in fields.items()}
                granted = issuer.token(form, self.headers.get("Authorization"))
                if granted is None:
                    self._answer(401, {"error": "invalid_client"})
                else:
                    self._answer(200, granted)

        return Handler
