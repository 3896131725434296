"""Test-bed helpers shared by the test suite and the benchmarks (real brokers, ports)."""
