"""The desktop binary's entry point: the `aerogrid` command, devkit and cloud commands included."""

import multiprocessing

from aerogrid.cli import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    main(prog_name="aerogrid")
