"""The static tokens file: a typed structure, read and reloaded, keeping only digests.

Format (by extension), a mapping of token → entry::

    # tokens.toml                         // tokens.json
    ["s3cr3t"]                            {"s3cr3t": {"subject": "alice",
    subject = "alice"                                 "tenants": ["desk-a"]}}
    tenants = ["desk-a"]

Each entry is checked against `TokenEntry` by msgspec, so an error names where in the
entry it is (`tenants[1]`) under the one sentence that says what the entry needs. An
entry is named by its position, never by its token: error messages end up in logs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

__all__ = ["StaticToken", "TokenEntry", "TokenFile", "parse_tokens_file"]

log = logging.getLogger(__name__)

_NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class TokenEntry(msgspec.Struct, frozen=True):
    """What the tokens file says of one token (other keys are ignored)."""

    subject: _NonEmpty
    tenants: frozenset[_NonEmpty]


#: The sentence each field's errors are explained by (msgspec's own detail follows it).
_FIELD_RULES = {
    "subject": "'subject' must be a non-empty string",
    "tenants": "'tenants' must be a list of strings",
}
_ENTRY_RULE = "must be a table with 'subject' and 'tenants'"


@dataclass(frozen=True)
class StaticToken:
    """A token of the file, kept as its SHA-256 digest."""

    digest: bytes
    subject: str
    tenants: frozenset[str]


class TokenFile:
    """The tokens file, reloaded when it changes; keeps only SHA-256 digests of tokens.

    A broken edit keeps the previous tokens (and logs an error) so a typo cannot lock
    everyone out; a deleted file means no static tokens at all.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp = self._stat()
        if self._stamp is None:
            raise ValueError(f"tokens file {path} does not exist")
        self._tokens = parse_tokens_file(path)

    def lookup(self, token: str) -> StaticToken | None:
        """The entry whose token matches, comparing every entry in constant time."""
        self._reload_if_changed()
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for entry in self._tokens:  # no early exit: the time taken does not depend on a match
            if hmac.compare_digest(entry.digest, digest):
                found = entry
        return found

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self._path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stat()
        except OSError as exc:
            log.error(
                "cannot check tokens file %s, keeping the current tokens: %s", self._path, exc
            )
            return
        if stamp == self._stamp:
            return
        self._stamp = stamp
        if stamp is None:
            log.warning("tokens file %s was removed: no static token is accepted", self._path)
            self._tokens = ()
            return
        try:
            self._tokens = parse_tokens_file(self._path)
        except (OSError, ValueError) as exc:
            log.error("tokens file %s is invalid, keeping the previous tokens: %s", self._path, exc)
            return
        log.info("reloaded %d static tokens from %s", len(self._tokens), self._path)


def parse_tokens_file(path: Path) -> tuple[StaticToken, ...]:
    """Every token of the file; ValueError, naming the entry and field, if one is wrong."""
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    data: object
    try:
        if suffix == ".json":
            data = json.loads(raw)
        elif suffix == ".toml":
            data = tomllib.loads(raw.decode())
        else:
            raise ValueError(f"tokens file {path} must end in .json or .toml")
    except (UnicodeDecodeError, json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        # Not chained: a JSONDecodeError carries the whole document, tokens included.
        raise ValueError(f"tokens file {path} is not valid {suffix[1:]}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"tokens file {path} must map each token to {{subject, tenants}}")
    entries = []
    for number, (token, fields) in enumerate(data.items(), start=1):
        where = f"tokens file {path}, entry {number}"
        if not isinstance(token, str) or not token or token != token.strip():
            raise ValueError(f"{where}: a token must be a non-empty string without spaces")
        entry = _entry(where, fields)
        entries.append(
            StaticToken(
                digest=hashlib.sha256(token.encode()).digest(),
                subject=entry.subject,
                tenants=entry.tenants,
            )
        )
    return tuple(entries)


def _entry(where: str, fields: object) -> TokenEntry:
    """One entry as a `TokenEntry`; its error says the rule, then where msgspec failed."""
    try:
        return msgspec.convert(fields, TokenEntry)
    except msgspec.ValidationError as exc:
        detail, _, at = str(exc).partition(" - at `$")
        field = at.rstrip("`").lstrip(".")
        rule = _FIELD_RULES.get(field.split("[", 1)[0].split(".", 1)[0], _ENTRY_RULE)
        subject = fields.get("subject") if isinstance(fields, dict) else None
        if field.startswith("tenants") and isinstance(subject, str) and subject:
            where = f"{where} ({subject})"
        located = f"{field}: {detail[:1].lower()}{detail[1:]}" if field else detail
        raise ValueError(f"{where}: {rule} ({located})") from None
