"""The console's Personas page on the real app (HTTP, signed in): a persona created in the editor, bound to a
base and visible to a group, appears in the chat's persona menu (the /project/settings answer the chat builds
it from) for that group's member only, without a restart; an invalid field shows the loader's message for
that field and saves nothing; versions and restore; YAML export and import; CSV drafts stay out of the menu;
a broken persona is listed with its reason; a forged token or a cross-site POST changes nothing."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
import yaml

from tests.browser.conftest import login
from tests.fixtures.appserver import REPO, kbchat_cli


def _setup(root):
    (root / "knowledge" / "hr").mkdir(parents=True, exist_ok=True)
    for args in (("groups", "add", "hr"), ("users", "groups", "bob", "--add", "hr")):
        r = kbchat_cli(*args, data_dir=root / "data")
        assert r.returncode == 0, (args, r.stderr)


pytestmark = [pytest.mark.app(admins=("alice",), users=("bob", "carol"), before_start=_setup)]


@pytest.fixture(scope="module")
def alice(app):
    c = login(app.url, "alice")
    c.headers["Origin"] = app.url
    yield c
    c.close()


def _csrf(client) -> str:
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', client.get("/admin/personas").text).group(1)


_SIGNED_IN: dict = {}


def _profiles(app, name) -> list[str]:
    """The chat's persona menu for ``name`` (what the chat's profile list is built from)."""
    if name not in _SIGNED_IN:
        _SIGNED_IN[name] = login(app.url, name)
    r = _SIGNED_IN[name].get("/project/settings", params={"language": "en-US"})
    assert r.status_code == 200
    return [p["name"] for p in r.json()["chatProfiles"]]


def _form(csrf: str, **over) -> dict:
    form = {"csrf": csrf, "is_new": "1", "version": "0", "status": "published", "id": "hr-helper",
            "icon": "/public/personas/general.svg", "name.en": "HR helper", "name.zh-TW": "人資小幫手",
            "description.en": "Answers from the HR base.", "situation": "You answer HR questions.",
            "task": "Answer from the passages.", "constraints": "Cite passages like [1].\nBe brief.",
            "ex_user_0": "How many leave days?", "ex_assistant_0": "Twenty days [1].",
            "starters.en": "Leave | How many leave days do I have?", "knowledge": "hr", "visible_to": "hr",
            "k": "5", "use_shared_knowledge": "on", "temperature": "0.3"}
    form.update(over)
    return {k: v for k, v in form.items() if v is not None}


def test_a_persona_made_in_the_console_reaches_the_groups_menu_only_without_restart(app, alice):
    assert "hr-helper" not in _profiles(app, "bob")
    csrf = _csrf(alice)
    r = alice.post("/admin/personas/save", data=_form(csrf), follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/admin/personas/edit/hr-helper"), r.text[:500]
    assert "hr-helper" in _profiles(app, "bob")          # bob is in hr
    assert "hr-helper" not in _profiles(app, "carol")    # carol is not
    assert "hr-helper" in _profiles(app, "alice")        # admins see every persona
    page = alice.get("/admin/personas").text
    assert 'id="pdb-row-hr-helper"' in page and "HR helper" in page
    r = kbchat_cli("audit", data_dir=app.root / "data")
    assert re.search(r"alice\s+persona\.create\s+hr-helper", r.stdout), r.stdout


@pytest.mark.parametrize(("over", "field", "words"), [
    ({"k": "50"}, "retrieval", "field 'retrieval.k': Input should be less than or equal to 20"),
    ({"knowledge": "wards"}, "knowledge", "field 'knowledge': unknown knowledge base 'wards' (known: default, "
                                          "clinic, hr); create it with `kbchat kb create wards`"),
    ({"name.en": ""}, "name", "field 'name': Value error, the 'en' entry is required"),
    ({"starters.en": "Only a label"}, "starters", "field 'starters.en[0].message': String should have at least 1 "
                                                  "character"),
    ({"temperature": "warm"}, "temperature", "field 'temperature': Input should be a valid number"),
])
def test_an_invalid_field_shows_the_loaders_message_and_saves_nothing(app, alice, over, field, words):
    before = alice.get("/admin/personas").text
    r = alice.post("/admin/personas/save", data=_form(_csrf(alice), id="nurse", **over), follow_redirects=False)
    assert r.status_code == 400
    shown = re.findall(r'<span class="error pdb-problem" data-field="([^"]*)">([^<]*)</span>', r.text)
    import html

    shown = {f: html.unescape(m) for f, m in shown}
    assert field in shown, shown
    assert shown[field].startswith(words.replace("Value error, ", "")), shown[field]
    assert "Nothing was saved" in r.text
    assert alice.get("/admin/personas/edit/nurse").status_code == 404
    assert alice.get("/admin/personas").text.count("pdb-row-") == before.count("pdb-row-")


def test_versions_restore_and_yaml_round_trip_in_the_page(app, alice):
    csrf = _csrf(alice)
    original = yaml.safe_load(alice.get("/admin/personas/edit/analyst/yaml").text)
    assert original == yaml.safe_load((REPO / "personas" / "analyst.yaml").read_text(encoding="utf-8"))
    # an unchanged save of the editor's own form is no new version
    page = alice.get("/admin/personas/edit/analyst").text
    assert "<td class=\"num\">1</td><td>seed</td>" in page
    edited = dict(original, temperature=0.5)
    r = alice.post("/admin/personas/import", data={"csrf": csrf},
                   files=[("files", ("analyst.yaml", yaml.safe_dump(edited, allow_unicode=True).encode(), "application/yaml"))],
                   follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    page = alice.get("/admin/personas/edit/analyst").text
    assert "<td class=\"num\">2</td><td>import</td><td><span class=\"tag\">temperature</span>" in page
    r = alice.post("/admin/personas/edit/analyst/restore", data={"csrf": csrf, "version": "1"}, follow_redirects=False)
    assert r.status_code == 303
    assert yaml.safe_load(alice.get("/admin/personas/edit/analyst/yaml").text) == original
    z = zipfile.ZipFile(io.BytesIO(alice.get("/admin/personas/export.zip").content))
    assert "personas/general.yaml" in z.namelist()
    assert yaml.safe_load(z.read("personas/general.yaml")) == yaml.safe_load(
        (REPO / "personas" / "general.yaml").read_text(encoding="utf-8"))
    # a bad YAML file imports nothing and says why in one line
    r = alice.post("/admin/personas/import", data={"csrf": csrf},
                   files=[("files", ("bad.yaml", b"id: [unclosed", "application/yaml"))])
    assert r.status_code == 400 and "bad.yaml: invalid YAML at line" in r.text


def test_csv_library_drafts_stay_out_of_the_menu_until_published(app, alice):
    csrf = _csrf(alice)
    lib = b'"act","prompt"\n"Film Critic","I want you to act as a film critic."\n'
    r = alice.post("/admin/personas/import-csv", data={"csrf": csrf},
                   files=[("files", ("prompts.csv", lib, "text/csv"))], follow_redirects=False)
    assert r.status_code == 303, r.text[:300]
    assert "Draft" in alice.get("/admin/personas").text
    assert "film-critic" not in _profiles(app, "alice")
    r = alice.post("/admin/personas/edit/film-critic/status", data={"csrf": csrf, "status": "published"},
                   follow_redirects=False)
    assert r.status_code == 303
    assert "film-critic" in _profiles(app, "carol")
    r = alice.post("/admin/personas/edit/film-critic/delete", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "film-critic" not in _profiles(app, "carol")
    assert 'id="pdb-removed-film-critic"' in alice.get("/admin/personas").text  # removed, restorable
    r = alice.post("/admin/personas/edit/film-critic/restore", data={"csrf": csrf, "version": "2"},
                   follow_redirects=False)
    assert r.status_code == 303 and "film-critic" in _profiles(app, "carol")
    r = alice.post("/admin/personas/edit/general/delete", data={"csrf": csrf})  # the default
    assert r.status_code == 400 and "is the default persona" in r.text


def test_forged_token_or_another_site_changes_nothing(app, alice):
    good = _form(_csrf(alice), id="forged", is_new="1")
    r = alice.post("/admin/personas/save", data={**good, "csrf": "0" * 64}, follow_redirects=False)
    assert r.status_code == 403
    r = alice.post("/admin/personas/save", data=good, headers={"Origin": "https://evil.example"},
                   follow_redirects=False)
    assert r.status_code == 403
    assert alice.get("/admin/personas/edit/forged").status_code == 404


def test_preview_link_sets_a_one_time_token_and_a_broken_persona_is_listed_with_why(app, alice):
    r = alice.get("/admin/personas/preview/doctor", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/" and "kbchat_preview=" in r.headers["set-cookie"]
    assert alice.get("/admin/personas/preview/nope", follow_redirects=False).status_code == 404
    # a persona bound to a base that is not there (any more) is shown broken, with the reason
    csrf = _csrf(alice)
    (app.root / "knowledge" / "temp").mkdir()
    try:
        r = alice.post("/admin/personas/save", data=_form(csrf, id="temp-desk", knowledge="temp", visible_to=None),
                       follow_redirects=False)
        assert r.status_code == 303, r.text[:500]
    finally:
        (app.root / "knowledge" / "temp").rmdir()
    page = alice.get("/admin/personas").text
    row = page[page.index('id="pdb-row-temp-desk"'):]
    assert "Broken: field &#39;knowledge&#39;: unknown knowledge base &#39;temp&#39;" in row[:1500]
    assert "temp-desk" not in _profiles(app, "alice")
