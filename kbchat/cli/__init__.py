"""The `kbchat` command: click commands only. Each command parses its options, calls the core
(knowledge, search, records, sharing) and prints; domain errors become one line and exit 1."""

from kbchat.cli.main import main

__all__ = ["main"]
