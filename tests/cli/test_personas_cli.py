"""`kbchat personas` for real (click's runner, a real SQLite database): the round trip personas/*.yaml ->
database -> export -> the same YAML, import of edited files with versions and restore, a bad file imports
nothing, prompt libraries (act, prompt CSV) as drafts, and `kbchat ask --persona` reading the database."""

from __future__ import annotations

import yaml
from click.testing import CliRunner

from kbchat.cli import main
from tests.conftest import REPO

SHIPPED = REPO / "personas"
CSV = ('"act","prompt","for_devs"\n'
       '"Film Critic","I want you to act as a film critic. You will review movies in an engaging way.","FALSE"\n'
       '"Doctor","I want you to act as a doctor and come up with treatments for illnesses.","FALSE"\n'
       '"","a prompt without an act","FALSE"\n'
       '"Film Critic","I want you to act as a strict film critic.","FALSE"\n')


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_round_trip_yaml_database_export_gives_the_same_yaml(cli_env, tmp_path):
    r = run("personas", "import", str(SHIPPED))  # the first use seeds the same files: nothing changes
    assert r.exit_code == 0, r.output
    assert "0 created, 0 updated, 4 unchanged" in r.output
    out = tmp_path / "exported"
    r = run("personas", "export", str(out))
    assert r.exit_code == 0 and "4 persona(s) written" in r.output, r.output
    shipped = sorted(p.name for p in SHIPPED.glob("*.yaml"))
    assert sorted(p.name for p in out.glob("*.yaml")) == shipped
    for name in shipped:
        assert _load(out / name) == _load(SHIPPED / name), name  # semantically equal
    # and back: the exported files import unchanged
    r = run("personas", "import", str(out))
    assert r.exit_code == 0 and "4 unchanged" in r.output, r.output


def test_an_edited_file_is_a_new_version_and_restore_brings_the_old_one(cli_env, tmp_path):
    edited = tmp_path / "in"
    edited.mkdir()
    data = _load(SHIPPED / "analyst.yaml")
    data["temperature"] = 0.6
    (edited / "analyst.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    r = run("personas", "import", str(edited / "analyst.yaml"))
    assert r.exit_code == 0 and "0 created, 1 updated" in r.output, r.output
    r = run("personas", "versions", "analyst")
    lines = r.output.splitlines()
    assert lines[0].startswith("v2\timport\tcli:") and lines[0].endswith("temperature")
    assert lines[1].startswith("v1\tseed")
    assert run("personas", "restore", "analyst", "1").exit_code == 0
    run("personas", "export", str(tmp_path / "out"), "--id", "analyst")
    assert _load(tmp_path / "out" / "analyst.yaml") == _load(SHIPPED / "analyst.yaml")
    r = run("audit")
    assert "persona.import" in r.output and "persona.restore" in r.output


def test_a_bad_file_imports_nothing_with_the_loaders_line(cli_env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = _load(SHIPPED / "analyst.yaml")
    good["temperature"] = 0.9
    (folder / "analyst.yaml").write_text(yaml.safe_dump(good, allow_unicode=True), encoding="utf-8")
    bad = {**_load(SHIPPED / "doctor.yaml"), "retrieval": {"k": 99}}
    (folder / "doctor.yaml").write_text(yaml.safe_dump(bad, allow_unicode=True), encoding="utf-8")
    r = run("personas", "import", str(folder))
    assert r.exit_code == 1
    assert (f"{folder / 'doctor.yaml'}: field 'retrieval.k': Input should be less than or equal to 20"
            in r.stderr)
    assert "nothing imported: 1 problem(s)" in r.stderr and "Traceback" not in r.output
    assert run("personas", "versions", "analyst").output.count("\n") == 1  # the seed only


def test_prompt_library_csv_becomes_drafts_outside_the_chat(cli_env, tmp_path):
    lib = tmp_path / "prompts.csv"
    lib.write_text(CSV, encoding="utf-8")
    r = run("personas", "import", str(lib))
    assert r.exit_code == 0, r.output
    assert "prompts.csv, row 4: empty 'act': left out" in r.stderr
    assert "3 draft(s) from CSV" in r.output
    r = run("personas", "list")
    rows = {line.split("\t")[0]: line for line in r.output.splitlines()}
    assert rows["film-critic"].endswith("draft") and rows["film-critic-2"].endswith("draft")
    assert "Film Critic" in rows["film-critic"] and rows["doctor-2"].endswith("draft")  # doctor is taken
    assert "4 in the chat" in r.stderr
    r = run("ask", "--persona", "film-critic", "hello")
    assert r.exit_code == 1 and "unknown persona 'film-critic'" in r.stderr
    assert run("personas", "publish", "film-critic").exit_code == 0
    out = tmp_path / "out"
    run("personas", "export", str(out))
    critic = _load(out / "film-critic.yaml")
    assert critic["prompt"]["situation"].startswith("I want you to act as a film critic")
    assert critic["name"] == {"en": "Film Critic"}
    not_csv = tmp_path / "notes.csv"
    not_csv.write_text("title,body\nx,y\n", encoding="utf-8")
    r = run("personas", "import", str(not_csv))
    assert r.exit_code == 1 and "expected the columns 'act' and 'prompt' in the first row (found: title, body)" \
        in r.stderr


def test_ask_with_a_persona_naming_a_missing_base_says_why(cli_env, tmp_path, monkeypatch):
    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(tmp_path / "knowledge"))
    r = run("ask", "--persona", "doctor", "hello")
    assert r.exit_code == 1
    assert ("persona 'doctor' cannot be used: field 'knowledge': unknown knowledge base 'clinic' (known: "
            "default)") in r.stderr
    r = run("personas", "list")
    assert "broken: field 'knowledge': unknown knowledge base 'clinic'" in r.output
    assert run("personas", "remove", "general").exit_code == 1  # the default
    assert run("personas", "remove", "doctor").exit_code == 0
    assert run("personas", "restore", "doctor", "1").exit_code == 0
