"""A .proto file for the Protobuf codec's tests, compiled by protoc (grpcio-tools) at test time.

`message_classes` gives its message classes from a descriptor pool of their own, as generated
code would have them; `an_order` fills every kind of field the codec meets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import Message
from grpc_tools import protoc  # type: ignore[import-untyped]

SHOP_PROTO = """
syntax = "proto3";
package shop.v1;
import "google/protobuf/timestamp.proto";

// An order; the comment { must not } confuse the reader.
message Order {
  string id = 1;
  int64 quantity = 2;
  map<string, int32> tag_counts = 3;
  message Line { string sku = 1; double price = 2; }
  repeated Line lines = 4;
  optional string note = 5;
  oneof payment { string card = 6; string iban = 7; }
  enum Status { NEW = 0; PAID = 1; }
  Status status = 8;
  google.protobuf.Timestamp at = 9;
  reserved 20 to 22;
  reserved "old";
}

message Refund { string order_id = 1; string reason = 2; }
"""


def compile_proto(tmp_path: Path, name: str, text: str) -> descriptor_pb2.FileDescriptorProto:
    """protoc's descriptor of `text` (as the file `name`), well-known imports resolved."""
    (tmp_path / name).write_text(text)
    out = tmp_path / f"{name}.pb"
    include = Path(protoc.__file__).parent / "_proto"
    code = protoc.main(
        ["protoc", f"-I{tmp_path}", f"-I{include}", f"--descriptor_set_out={out}", name]
    )
    if code != 0:
        raise RuntimeError(f"protoc failed on {name} (exit {code})")
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return files.file[0]


def message_classes(file: descriptor_pb2.FileDescriptorProto) -> dict[str, type[Message]]:
    """The message classes of a compiled file, from a pool of their own."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{name}"))
        for name in ("Order", "Order.Line", "Refund")
    }


def an_order(classes: dict[str, type[Message]]) -> Any:
    order: Any = classes["Order"](id="o-1", quantity=3, card="4242", status=1, note="")
    order.tag_counts["rush"] = 2
    order.lines.add(sku="A", price=1.5)
    order.at.seconds = 1_700_000_000
    return order
