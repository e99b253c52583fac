"""Every setting is documented: the README's settings table names each KBCHAT_* variable."""

import re

from kbchat.settings import Settings
from tests.conftest import REPO


def test_every_setting_is_in_the_readme_table():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    # rows like `KBCHAT_EMBEDDING_QUERY_PREFIX` / `_PASSAGE_PREFIX` document two variables
    names = set()
    for row in table.splitlines():
        first = row.split("|")[1] if row.startswith("|") else ""
        full = re.findall(r"`KBCHAT_([A-Z_]+)`", first)
        names.update(full)
        for short in re.findall(r"`_([A-Z_]+)`", first):
            if full:
                stem = full[0].rsplit("_", short.count("_") + 1)[0]
                names.add(f"{stem}_{short}")
    missing = [f for f in Settings.model_fields if f.upper() not in names]
    assert not missing, f"settings missing from the README table: {missing}"
    for f, info in Settings.model_fields.items():
        assert info.description, f"setting {f} has no description"
