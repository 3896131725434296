"""`python -m aerogrid run APP.py`: the runner with the runtime alone."""

from aerogrid.cli import main

main(prog_name="aerogrid")
