"""`python -m aerogrid_cloud.operator`: the command the operator's Deployment runs."""

from aerogrid_cloud.operator.cli import main

main()
