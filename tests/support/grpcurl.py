"""grpcurl, the real one (scripts/build_grpcurl.sh), against a server: no .proto files,
only what the server's reflection says, as a user would run it."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from support.go_tools import go_tool


def grpcurl_binary() -> Path:
    """grpcurl 1.9.4, built once (skips locally without Go, fails under CI=true)."""
    return go_tool("build_grpcurl.sh", "grpcurl")


def json_messages(text: str) -> list[dict[str, Any]]:
    """grpcurl's output: one JSON object per response message, one after the other."""
    decoder = json.JSONDecoder()
    messages, at = [], 0
    text = text.strip()
    while at < len(text):
        message, end = decoder.raw_decode(text, at)
        messages.append(message)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return messages


@dataclass(frozen=True)
class Grpcurl:
    """grpcurl pointed at one address (`-plaintext` unless `flags` say otherwise)."""

    binary: Path
    address: str
    flags: tuple[str, ...] = ("-plaintext",)

    def run(
        self, *args: str, data: dict[str, Any] | None = None, timeout: float = 15
    ) -> subprocess.CompletedProcess[str]:
        """`grpcurl FLAGS [-d DATA] ADDRESS ARGS...`, whatever its exit code."""
        command = [str(self.binary), *self.flags]
        if data is not None:
            command += ["-d", json.dumps(data)]
        command += [self.address, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)

    def ok(self, *args: str, data: dict[str, Any] | None = None, timeout: float = 15) -> str:
        """Its output, asserting it succeeded."""
        done = self.run(*args, data=data, timeout=timeout)
        assert done.returncode == 0, f"grpcurl {' '.join(args)}: {done.stderr or done.stdout}"
        return done.stdout

    def call(
        self, method: str, data: dict[str, Any] | None = None, *, timeout: float = 15
    ) -> list[dict[str, Any]]:
        """The response messages of a call that ends well (a unary call: one)."""
        return json_messages(self.ok(method, data=data or {}, timeout=timeout))

    def stream(self, method: str, data: dict[str, Any], seconds: float) -> list[dict[str, Any]]:
        """A server stream's messages for `seconds` (`-max-time`; ending then is no error)."""
        command = Grpcurl(self.binary, self.address, (*self.flags, "-max-time", f"{seconds:g}"))
        done = command.run(method, data=data, timeout=seconds + 15)
        if done.returncode != 0:
            assert "DeadlineExceeded" in done.stderr, done.stderr
        return json_messages(done.stdout)

    def health(self, service: str = "") -> str:
        """grpc.health.v1.Health/Check's status for `service` (NOT_FOUND: "NOT_FOUND")."""
        done = self.run("grpc.health.v1.Health/Check", data={"service": service})
        if done.returncode != 0:
            assert "NotFound" in done.stderr, done.stderr
            return "NOT_FOUND"
        (answer,) = json_messages(done.stdout)
        return str(answer["status"])
