"""The question quota on both databases: the N+1st question of a UTC day is refused, a group's figure
overrides the default (the most generous one), a new day starts again at 0."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from kbchat.records.access import Access
from kbchat.records.accounts import Accounts
from kbchat.records.database import Database, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def access(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else default_url(tmp_path / "data")
    d = Database(url)
    Accounts(d).add("carol", "carol-password-1")
    yield Access(d)
    d.close()


def test_the_n_plus_first_question_is_refused(access):
    access.add_group("trial")
    access.add_member("carol", "trial")
    access.set_group_quota("trial", 2)
    limit = access.quota_limit("carol", 50)
    assert limit == 2
    day = datetime(2026, 12, 4, 10, tzinfo=timezone.utc)
    got = [access.take_question("carol", limit, now=day) for _ in range(4)]
    assert [q.allowed for q in got] == [True, True, False, False]
    assert got[-1].used == 2 and got[-1].resets_at == datetime(2026, 12, 5, tzinfo=timezone.utc)
    assert access.take_question("carol", limit, now=datetime(2026, 12, 5, 0, 1, tzinfo=timezone.utc)).allowed
    assert not access.take_question("carol", 0, now=day).allowed
