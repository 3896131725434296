"""AeroGrid SDK."""
