"""`python -m cluster.cli`: how the stack starts its child processes."""

from cluster.cli.main import main

main()
