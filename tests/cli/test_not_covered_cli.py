"""Issue 27 in the CLI: `kbchat search` and `kbchat ask` say when the documents do not cover a question."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from kbchat.cli import main

LEAFLET = Path(__file__).resolve().parents[1] / "eval" / "leaflets" / "en-colonoscopy-preparation.pdf"


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_search_and_ask_say_not_covered(cli_env, stub):
    assert run("ingest", str(LEAFLET)).exit_code == 0
    r = run("search", "What are the visiting hours on the hospital ward?")
    assert r.exit_code == 0 and "The documents do not cover this question" in r.output
    assert "en-colonoscopy-preparation.pdf" in r.output  # the closest passages are still listed
    r = run("search", "What can I drink the day before my colonoscopy?")
    assert "do not cover" not in r.output and "en-colonoscopy-preparation.pdf" in r.output
    r = run("ask", "--json", "What are the visiting hours on the hospital ward?")
    assert json.loads(r.output)["not_covered"] is True
    r = run("ask", "--json", "What can I drink the day before my colonoscopy?")
    assert json.loads(r.output)["not_covered"] is False
