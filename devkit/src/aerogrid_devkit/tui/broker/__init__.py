"""The broker section: the local broker's mode, address and health, up and down."""
