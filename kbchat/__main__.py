"""`python -m kbchat` runs the CLI."""

from kbchat.cli import main

main()
