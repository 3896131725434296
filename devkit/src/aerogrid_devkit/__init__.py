"""The AeroGrid devkit: the local development loop on a desktop."""
