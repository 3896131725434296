"""Benchmarks of the runtime against its peers (see README.md here)."""
