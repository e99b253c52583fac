"""Fixtures of the database tests."""

from __future__ import annotations

import pytest

from kbchat.records.database import Database, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    """The one database on both engines the app runs on."""
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else default_url(tmp_path / "data")
    d = Database(url)
    yield d
    d.close()
