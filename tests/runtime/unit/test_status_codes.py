"""The one status-code table (`aerogrid.server.errors.Code`) against the specs it follows."""

from __future__ import annotations

import re

import grpc
import pytest

from aerogrid import client
from aerogrid.server.errors import Code
from support.paths import REPO

# https://connectrpc.com/docs/protocol#error-codes: Connect code -> HTTP status.
CONNECT_HTTP_STATUS = {
    "canceled": 499,
    "unknown": 500,
    "invalid_argument": 400,
    "deadline_exceeded": 504,
    "not_found": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "resource_exhausted": 429,
    "failed_precondition": 400,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data_loss": 500,
    "unauthenticated": 401,
}


def test_every_grpc_error_status_has_one_code() -> None:
    errors = [status for status in grpc.StatusCode if status is not grpc.StatusCode.OK]
    assert sorted(code.grpc_status.name for code in Code) == sorted(s.name for s in errors)
    for status in errors:
        assert Code.from_grpc(status).grpc_status is status


@pytest.mark.parametrize("code", list(Code))
def test_code_names_and_numbers_follow_grpc(code: Code) -> None:
    # Connect spells gRPC's names in lower case; CANCELLED is its one respelling.
    assert code.value == code.grpc_status.name.lower().replace("cancelled", "canceled")
    assert code.grpc_number == code.grpc_status.value[0]
    assert 1 <= code.grpc_number <= 16


def test_http_statuses_follow_the_connect_spec() -> None:
    assert {code.value: code.http_status for code in Code} == CONNECT_HTTP_STATUS


def test_ok_is_no_error_code() -> None:
    assert Code.from_grpc(grpc.StatusCode.OK) is Code.UNKNOWN


def test_the_client_retries_what_the_table_says() -> None:
    retried = {code for code in Code if code.retryable}
    assert retried == {Code.CANCELED, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.UNAVAILABLE}
    assert {code.grpc_status for code in retried} == client._RETRYABLE
    # Dropped for falling behind: resumed, but only once the stream had started.
    assert not Code.RESOURCE_EXHAUSTED.retryable
    assert client._DROPPED is Code.RESOURCE_EXHAUSTED.grpc_status


def test_the_add_ins_retry_list_is_the_tables_with_its_stated_differences() -> None:
    """excel/src/core/errors.ts retries what the table says, with the differences it states."""
    source = (REPO / "excel/src/core/errors.ts").read_text()
    found = re.search(r"RETRYABLE_CODES: ReadonlySet<number> = new Set\(\[([\d, ]+)\]\)", source)
    assert found, "errors.ts no longer declares RETRYABLE_CODES"
    add_in = {int(n) for n in found.group(1).split(",")}
    table = {code.grpc_number for code in Code if code.retryable}
    # canceled: Excel cancelling a formula; unknown: connect-web's broken fetch;
    # resource_exhausted: a server at its cap, which a cell waits out.
    expected = (table - {Code.CANCELED.grpc_number}) | {
        Code.UNKNOWN.grpc_number,
        Code.RESOURCE_EXHAUSTED.grpc_number,
    }
    assert add_in == expected
