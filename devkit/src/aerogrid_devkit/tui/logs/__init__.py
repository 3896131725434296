"""The logs section: the output of every app and of the loop, kept and shown."""
