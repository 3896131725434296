"""The devkit's terminal UI (Textual): the screens of `aerogrid dev`."""
