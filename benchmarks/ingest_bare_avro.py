"""The Avro floor of benchmarks.ingest_formats: the bare aiokafka loop reading Avro with fastavro.

What a hand-written consumer does: the writer schema fetched from the registry once per id
(the Confluent REST API), then per record the 5-byte header checked and
`fastavro.schemaless_reader` into a dict. No reader schema, no Record: the least work an Avro
value can cost in Python. The loop itself is benchmarks.ingest_bare's.

    python -m benchmarks.ingest_bare_avro BOOTSTRAP TOPIC N RESULT REGISTRY_URL
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from pathlib import Path
from typing import Any

import fastavro
import httpx

from benchmarks.ingest_bare import consume


class AvroFloor:
    """Decode Confluent-framed Avro orders, each writer schema fetched once by id."""

    def __init__(self, registry_url: str) -> None:
        self.registry_url = registry_url.rstrip("/")
        self._schemas: dict[int, Any] = {}

    def _writer(self, schema_id: int) -> Any:
        answer = httpx.get(f"{self.registry_url}/schemas/ids/{schema_id}", timeout=10)
        answer.raise_for_status()
        return fastavro.parse_schema(json.loads(answer.json()["schema"]))

    def __call__(self, data: bytes) -> tuple[str, int]:
        if data[0] != 0:
            raise ValueError(f"magic byte {data[0]:#x} is not 0")
        schema_id = int.from_bytes(data[1:5], "big")
        writer = self._schemas.get(schema_id)
        if writer is None:
            writer = self._schemas[schema_id] = self._writer(schema_id)
        order: dict[str, Any] = fastavro.schemaless_reader(io.BytesIO(data[5:]), writer, None)  # type: ignore[assignment]
        return order["product"], order["quantity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bootstrap")
    parser.add_argument("topic")
    parser.add_argument("records", type=int)
    parser.add_argument("result", type=Path)
    parser.add_argument("registry")
    args = parser.parse_args()
    decode = AvroFloor(args.registry)
    result = asyncio.run(consume(args.bootstrap, args.topic, args.records, decode))
    args.result.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
