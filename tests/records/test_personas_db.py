"""Personas in the database (kbchat.records.personas) on both engines: the seed from personas/, the one
validator (the loader's messages, nothing saved on a bad field), versions with restore, the one default,
drafts, the chat's cache seeing a change without a restart, and the upgrade from revision 0004."""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from kbchat.errors import ConfigError
from kbchat.personas import PersonaInvalid, load_persona, load_personas, persona_data
from kbchat.records.database import Database
from kbchat.records.personas import DRAFT, PUBLISHED, PersonaCache, PersonaError, PersonaRecords
from tests.conftest import REPO

SHIPPED = REPO / "personas"


@pytest.fixture
def records(db):
    r = PersonaRecords(db)
    assert r.seed(SHIPPED) == 4
    return r


def _general() -> dict:
    return yaml.safe_load((SHIPPED / "general.yaml").read_text(encoding="utf-8"))


def _rows(db, table: str) -> int:
    with db.connect() as c:
        return c.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar()


def test_seed_once_from_the_folder_and_the_chat_sees_the_same_personas(records, db):
    shipped = load_personas(SHIPPED)
    cat = records.catalog(["default", "clinic"])
    assert list(cat.personas) == list(shipped) and cat.personas == shipped  # same ids, order, fields
    assert cat.broken == {} and cat.drafts == ()
    assert records.seed(SHIPPED) == 0  # not empty any more
    vs = records.versions("doctor")
    assert [(v.version, v.action, v.changed_by) for v in vs] == [(1, "seed", None)]
    with db.connect() as c:
        audited = c.exec_driver_sql("SELECT count(*) FROM audit WHERE action = 'persona.seed'").scalar()
    assert audited == 4
    # without the clinic base the two clinic personas are broken, with the loader's reason
    cat = records.catalog(["default"])
    assert list(cat.personas) == ["general", "analyst"]
    assert cat.broken["doctor"] == ("field 'knowledge': unknown knowledge base 'clinic' (known: default); "
                                    "create it with `kbchat kb create clinic`")


def test_removing_every_persona_does_not_seed_them_again(records):
    for rec in records.records():
        if rec.id != "general":
            records.delete(rec.id, by="boss")
    assert records.seed(SHIPPED) == 0
    assert [r.id for r in records.records()] == ["general"]


@pytest.mark.parametrize(("change", "field"), [
    ({"retrieval": {"k": 50}}, "retrieval"),
    ({"knowledge": ["Clinic"]}, "knowledge"),
    ({"name": {"fr": "Généraliste"}}, "name"),
    ({"surprise": 1}, "surprise"),
    ({"prompt": {"situation": "", "task": "x"}}, "prompt"),
])
def test_an_invalid_field_gives_the_loaders_message_and_saves_nothing(records, db, tmp_path, change, field):
    data = {**_general(), **change}
    path = tmp_path / "general.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError) as from_file:
        load_persona(path)
    before = (records.revision(), _rows(db, "persona_versions"), records.get("general").data)
    with pytest.raises(PersonaInvalid) as from_db:
        records.save(data, by="boss")
    assert str(from_db.value) == str(from_file.value).replace(str(path), "persona 'general'")
    assert field in from_db.value.by_field() and "field '" in from_db.value.by_field()[field]
    assert (records.revision(), _rows(db, "persona_versions"), records.get("general").data) == before


def test_unknown_base_in_the_editor_is_refused_with_the_loaders_message(records):
    data = {**_general(), "id": "nurse", "default": False, "knowledge": ["wards"]}
    with pytest.raises(PersonaInvalid) as err:
        records.save(data, by="boss", bases=["default", "clinic"])
    assert err.value.by_field() == {"knowledge": "field 'knowledge': unknown knowledge base 'wards' (known: "
                                                 "default, clinic); create it with `kbchat kb create wards`"}
    assert records.get("nurse") is None


def test_versions_say_who_changed_what_and_restore_brings_one_back(records, db):
    v1 = records.get("analyst")
    changed = {**v1.data, "temperature": 0.7, "prompt": {**v1.data["prompt"], "task": "Only tables."}}
    records.save(changed, by="boss", expected_version=1)
    assert records.get("analyst").version == 2
    with pytest.raises(PersonaError, match="was changed by boss since it was opened"):
        records.save({**changed, "temperature": 0.3}, by="carol", expected_version=1)
    v2 = records.versions("analyst")[0]
    assert (v2.version, v2.action, v2.changed, v2.changed_by) == (2, "update", ["prompt", "temperature"], "boss")
    assert records.save(changed, by="boss").temperature == 0.7  # unchanged: no new version
    assert records.get("analyst").version == 2
    records.restore("analyst", 1, by="carol")
    now = records.get("analyst")
    assert now.data == v1.data and now.version == 3 and now.updated_by == "carol"
    assert [v.action for v in records.versions("analyst")] == ["restore", "update", "seed"]
    with pytest.raises(PersonaError, match="has no version 9"):
        records.restore("analyst", 9, by="carol")
    # a removed persona keeps its versions and comes back with restore
    records.delete("analyst", by="boss")
    assert records.get("analyst") is None and records.versions("analyst")[0].action == "delete"
    records.restore("analyst", 3, by="boss")
    assert records.get("analyst").data == v1.data
    with db.connect() as c:
        actions = [r[0] for r in c.exec_driver_sql(
            "SELECT action FROM audit WHERE target = 'analyst' ORDER BY id").fetchall()]
    assert actions == ["persona.seed", "persona.update", "persona.restore", "persona.delete", "persona.restore"]


def test_one_default_drafts_stay_out_of_the_chat(records):
    with pytest.raises(PersonaInvalid, match="field 'default': exactly one persona"):
        records.save({**records.get("general").data, "default": False}, by="boss")
    with pytest.raises(PersonaError, match="is the default persona"):
        records.delete("general", by="boss")
    nurse = {**_general(), "id": "nurse", "name": {"en": "Nurse"}}
    nurse.pop("default")
    with pytest.raises(PersonaInvalid, match="a draft cannot be the default"):
        records.save({**nurse, "default": True}, by="boss", status=DRAFT)
    records.save(nurse, by="boss", status=DRAFT)
    cat = records.catalog(["default", "clinic"])
    assert "nurse" not in cat.personas and cat.drafts == ("nurse",)
    records.set_status("nurse", PUBLISHED, by="boss")
    assert "nurse" in records.catalog(["default", "clinic"]).personas
    # saving another persona as the default moves it
    records.save({**records.get("analyst").data, "default": True}, by="boss")
    cat = records.catalog(["default", "clinic"])
    assert list(cat.personas)[0] == "analyst" and not cat.personas["general"].default
    assert records.versions("general")[0].changed == ["default"]


def test_the_cache_sees_a_change_without_a_restart(records):
    bases = ["default", "clinic"]
    cache = PersonaCache(records, lambda: list(bases))
    first = cache.current()
    assert cache.current() is first  # nothing changed: no rebuild
    records.save({**records.get("general").data, "name": {"en": "Helper"}}, by="boss")
    assert cache.current().personas["general"].display_name("en") == "Helper"
    bases.remove("clinic")
    assert set(cache.current().broken) == {"clinic-qpl", "doctor"}


def test_a_0004_database_is_upgraded_and_seeded(tmp_path):
    from alembic import command
    from alembic.config import Config

    from kbchat.records.database import MIGRATIONS

    db_file = tmp_path / "kbchat.sqlite"
    url = f"sqlite:///{db_file}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0004")
    con = sqlite3.connect(db_file)
    con.execute("INSERT INTO groups (name, quota_per_day, created_at) VALUES ('hr', NULL, '2026-01-01')")
    con.commit()
    con.close()
    db = Database(url)
    try:
        records = PersonaRecords(db)
        assert records.records() == [] and records.revision() == 0
        assert records.seed(SHIPPED) == 4
        assert persona_data(records.catalog(["default", "clinic"]).personas["general"]) == _general()
    finally:
        db.close()
