"""Promote from the TUI (`p` on an app): pick a cloud target, run the promote in a worker
thread, say each step as a notification and a line in the logs."""
