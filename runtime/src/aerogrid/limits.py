"""How big and how deep a record may be: the bounds that keep one record from stopping an app.

One place for every size policy, so the decoders, the grids' changelog check, the dead
letters and the producer agree.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

#: The largest record the engine produces: aiokafka's `max_request_size` default, which
#: the engine's producer is given, and within Kafka's default `message.max.bytes`
#: (1,048,588) for a batch holding that one record.
MAX_MESSAGE_BYTES: Final = 1_048_576

#: Room kept under MAX_MESSAGE_BYTES for what a record carries besides its key and value:
#: the batch and record framing and the headers the engine adds (a changelog record's
#: cycle header).
RECORD_OVERHEAD: Final = 1024

#: The most a record the engine produces may carry (key, value and headers): bigger ones
#: are refused where they are made, so the batch they belong to can always be committed.
MAX_PAYLOAD_BYTES: Final = MAX_MESSAGE_BYTES - RECORD_OVERHEAD

#: The largest changelog record (row key + row) a grid accepts: a bigger row is refused
#: when it is assigned, so the input record that made it is rolled back and dead-lettered.
MAX_ROW_BYTES: Final = MAX_PAYLOAD_BYTES

#: An input key or value longer than this is a decode error, whatever its type.
MAX_RECORD_BYTES: Final = 16 * 1024 * 1024

#: JSON nested deeper than this (arrays and objects) is a decode error.
MAX_DEPTH: Final = 128


def headers_size(headers: Iterable[tuple[str, bytes | None]]) -> int:
    """Bytes headers take in a record: names, values and (at most) their length prefixes."""
    return sum(len(name.encode()) + len(value or b"") + 10 for name, value in headers)
