"""Registry formats (Avro, Protobuf, JSON Schema) in the devkit's produce, tail and TUI."""
