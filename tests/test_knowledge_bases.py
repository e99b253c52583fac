"""Several knowledge bases: sub-folders of knowledge/ synced into their own base, descriptions, documents
added and removed one at a time (who and when recorded, the catalog of an older data dir upgraded),
personas bound to bases (validated at load), and the `kbchat kb` / `kbchat ingest --kb` commands."""

from __future__ import annotations

import sqlite3

import pytest
import yaml
from click.testing import CliRunner

from kbchat.errors import ConfigError, KbchatError
from kbchat.knowledge import (
    DEFAULT_BASE, add_document, base_names, create_base, get_base, list_bases, read_description,
    remove_document, stored_dir, sync_knowledge,
)
from kbchat.personas import load_personas
from kbchat.settings import Settings
from kbchat.search.store import EmbeddedStore
from tests.conftest import REPO, make_pdf


@pytest.fixture
def kb_settings(tmp_path):
    return Settings(data_dir=tmp_path / "data", knowledge_dir=tmp_path / "knowledge",
                    personas_dir=REPO / "personas")


def _keys(store, name):
    return sorted(d.source_key for d in store.collection(name).documents())


def test_sub_folders_are_bases_and_leave_the_default_base(kb_settings, embedder, tmp_path):
    k = tmp_path / "knowledge"
    make_pdf(k / "handbook.pdf", ["The office opens at 8 am."])
    make_pdf(k / "clinic" / "leaflet.pdf", ["Fever above 39 degrees: see a doctor within a day."])
    (k / "clinic" / "qpl").mkdir()
    (k / "clinic" / "qpl" / "questions.md").write_text("# QPL\n\nWhat could be causing this?\n", encoding="utf-8")
    (k / "README.md").write_text("# knowledge\n\nThe organisation's documents.\n", encoding="utf-8")
    (k / "clinic" / "README.md").write_text("# clinic\n\nPatient leaflets\nfor the clinic.\n\nMore text.\n",
                                            encoding="utf-8")
    (k / "Bad Name").mkdir()
    make_pdf(k / "Bad Name" / "x.pdf", ["Never indexed."])
    store = EmbeddedStore(kb_settings.data_dir, embedder)
    try:
        # a data dir of the previous kbchat: sub-folder files (and the README) went into the default base
        old = store.collection(kb_settings.shared_collection)
        from kbchat.documents.reader import read_document

        for rel in ("clinic/leaflet.pdf", "README.md"):
            old.add(read_document(k / rel), source_key=f"knowledge/{rel}", origin="knowledge")
        events = []
        report = sync_knowledge(store, kb_settings, on_file=lambda key, status: events.append((key, status)))
        assert base_names(kb_settings) == ["default", "clinic"]
        assert _keys(store, "knowledge") == ["knowledge/handbook.pdf"]
        assert _keys(store, "kb-clinic") == ["knowledge/clinic/leaflet.pdf", "knowledge/clinic/qpl/questions.md"]
        assert ("knowledge/clinic/leaflet.pdf", "removed") in events and ("knowledge/README.md", "removed") in events
        assert report.removed == 2 and report.failed == 1 and report.files == 3
        bad = [s for key, s in events if key == "knowledge/Bad Name/"]
        assert bad == ["failed: not a knowledge-base name (use lower-case letters, digits, '-' and '_'); "
                       "its files are not indexed"]
        assert "(2 bases)" in str(report)
        # descriptions: the first paragraph of README.md that is not a heading
        assert [(b.name, b.description, b.collection) for b in list_bases(kb_settings)] == [
            ("default", "The organisation's documents.", "knowledge"),
            ("clinic", "Patient leaflets for the clinic.", "kb-clinic")]
        # a file moved from one base to another, and one deleted
        (k / "clinic" / "leaflet.pdf").rename(k / "leaflet.pdf")
        (k / "clinic" / "qpl" / "questions.md").unlink()
        sync_knowledge(store, kb_settings)
        assert _keys(store, "knowledge") == ["knowledge/handbook.pdf", "knowledge/leaflet.pdf"]
        assert _keys(store, "kb-clinic") == []
    finally:
        store.close()


def test_documents_added_and_removed_one_at_a_time(kb_settings, embedder, tmp_path):
    create_base(kb_settings, "clinic", "Patient leaflets.")
    assert get_base(kb_settings, "clinic").description == "Patient leaflets."
    pdf = make_pdf(tmp_path / "up" / "fever.pdf", ["Fever in children: give fluids.", "Call 119 if drowsy."])
    make_pdf(tmp_path / "knowledge" / "clinic" / "folder.pdf", ["A folder document."])
    store = EmbeddedStore(kb_settings.data_dir, embedder)
    try:
        sync_knowledge(store, kb_settings)
        stages = []
        doc, result = add_document(store, kb_settings, "clinic", pdf, name="fever.pdf", added_by="boss",
                                   on_page=lambda d, t: stages.append("page"),
                                   on_embed=lambda d, t: stages.append("embed"))
        assert result.status == "added" and doc.pages == 2 and "page" in stages and "embed" in stages
        docs = {d.source: d for d in store.collection("kb-clinic").documents()}
        assert docs["fever.pdf"].added_by == "boss" and docs["fever.pdf"].origin == "admin"
        assert docs["folder.pdf"].added_by == "" and docs["folder.pdf"].added_at
        kept = stored_dir(kb_settings, "clinic") / f"{doc.doc_hash}.pdf"
        assert kept.is_file() and docs["fever.pdf"].path == str(kept)
        # a new version under the same name replaces the old one (Collection.add's atomic replace)
        make_pdf(pdf, ["Fever in children: give fluids and rest."])
        _doc, again = add_document(store, kb_settings, "clinic", pdf, name="fever.pdf", added_by="boss")
        assert again.status == "replaced" and not kept.exists()
        assert [d.source for d in store.collection("kb-clinic").documents()].count("fever.pdf") == 1
        with pytest.raises(KbchatError, match=r"folder\.pdf comes from the folder \(knowledge/clinic/folder\.pdf\): "
                                              "delete the file there"):
            remove_document(store, kb_settings, "clinic", "folder.pdf")
        with pytest.raises(KbchatError, match="no document 'nope.pdf' in this knowledge base"):
            remove_document(store, kb_settings, "clinic", "nope.pdf")
        gone = remove_document(store, kb_settings, "clinic", "fever.pdf")
        assert gone.source == "fever.pdf" and not list(stored_dir(kb_settings, "clinic").glob("*.pdf"))
        assert [d.source for d in store.collection("kb-clinic").documents()] == ["folder.pdf"]
        with pytest.raises(KbchatError, match=r"unknown knowledge base 'other' \(known: default, clinic\)"):
            add_document(store, kb_settings, "other", pdf, name="fever.pdf", added_by="boss")
    finally:
        store.close()
    with pytest.raises(KbchatError, match="already exists"):
        create_base(kb_settings, "clinic")
    with pytest.raises(KbchatError, match="not a knowledge-base name"):
        create_base(kb_settings, "Clinic A")


def test_an_older_catalog_gains_the_added_by_column(tmp_path, embedder, pdf_factory):
    from kbchat.documents.reader import read_document

    store = EmbeddedStore(tmp_path / "data", embedder)
    store.collection("knowledge").add(read_document(pdf_factory("a.pdf", ["Alpha text."])), origin="cli")
    store.close()
    con = sqlite3.connect(tmp_path / "data" / "catalog.sqlite")
    con.execute("ALTER TABLE documents DROP COLUMN added_by")  # as an earlier kbchat wrote it
    con.commit()
    con.close()
    store = EmbeddedStore(tmp_path / "data", embedder)
    try:
        [doc] = store.collection("knowledge").documents()
        assert doc.source == "a.pdf" and doc.added_by == ""
    finally:
        store.close()


def test_read_description_edge_cases(tmp_path):
    assert read_description(tmp_path) == ""
    (tmp_path / "README.md").write_text("# only a heading\n", encoding="utf-8")
    assert read_description(tmp_path) == ""
    (tmp_path / "README.md").write_text("x " * 400, encoding="utf-8")
    assert len(read_description(tmp_path)) == 300


# ---------------------------------------------------------------- personas bound to bases


def _persona(folder, pid, **extra):
    data = yaml.safe_load((REPO / "personas" / "general.yaml").read_text(encoding="utf-8"))
    data.update(id=pid, **extra)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{pid}.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return folder / f"{pid}.yaml"


def test_persona_naming_an_unknown_base_is_refused_at_load(tmp_path, kb_settings):
    folder = tmp_path / "personas"
    _persona(folder, "general")
    path = _persona(folder, "nurse", default=False, knowledge=["clinic", "general"])
    create_base(kb_settings, "clinic")
    with pytest.raises(ConfigError) as err:
        load_personas(folder, bases=base_names(kb_settings))
    assert str(err.value) == (f"{path}: field 'knowledge': unknown knowledge base 'general' (known: default, "
                              "clinic); create it with `kbchat kb create general`")
    create_base(kb_settings, "general")
    personas = load_personas(folder, bases=base_names(kb_settings))
    assert personas["nurse"].knowledge == ["clinic", "general"]
    assert personas["general"].knowledge == [DEFAULT_BASE]  # the default when a persona says nothing


@pytest.mark.parametrize(("value", "words"), [
    (["Clinic"], "field 'knowledge[0]': String should match pattern"),
    ([], "field 'knowledge': name at least one knowledge base"),
    (["clinic", "clinic"], "field 'knowledge': knowledge base named twice: clinic"),
])
def test_persona_knowledge_field_is_checked(tmp_path, value, words):
    path = _persona(tmp_path / "personas", "general", knowledge=value)
    with pytest.raises(ConfigError) as err:
        load_personas(tmp_path / "personas")
    assert str(path) in str(err.value) and words in str(err.value)


def test_shipped_personas_bind_the_clinic_base():
    personas = load_personas(REPO / "personas", bases=base_names(Settings(knowledge_dir=REPO / "knowledge")))
    assert personas["clinic-qpl"].knowledge == ["clinic"] and personas["doctor"].knowledge == ["clinic"]
    assert personas["general"].knowledge == ["default"] and personas["analyst"].knowledge == ["default"]
    assert (REPO / "knowledge" / "clinic" / "README.md").is_file()


# ---------------------------------------------------------------- the CLI


def test_kb_commands(tmp_path, monkeypatch, pdf_factory):
    from kbchat.cli import main

    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(tmp_path / "knowledge"))
    monkeypatch.setenv("KBCHAT_PERSONAS_DIR", str(REPO / "personas"))
    (tmp_path / "knowledge").mkdir()

    def run(*args):
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    r = run("kb", "create", "clinic", "--description", "Patient leaflets and QPLs.")
    assert r.exit_code == 0 and "created knowledge base 'clinic'" in r.output
    assert "Patient leaflets and QPLs." in (tmp_path / "knowledge" / "clinic" / "README.md").read_text()
    r = run("kb", "create", "clinic")
    assert r.exit_code == 1 and "Error: knowledge base 'clinic' already exists" in r.output

    pdf = pdf_factory("fever.pdf", ["Fever in children: give fluids.", "Call 119 if the child is drowsy."])
    r = run("ingest", str(pdf), "--kb", "clinic")
    assert r.exit_code == 0 and "into 'kb-clinic'" in r.output, r.output
    r = run("ingest", str(pdf), "--kb", "nope")
    assert r.exit_code == 1 and ("Error: unknown knowledge base 'nope' (known: default, clinic); "
                                 "create it with: kbchat kb create nope") in r.output
    r = run("ingest", str(pdf), "--kb", "clinic", "--collection", "x")
    assert r.exit_code == 2 and "give --kb or --collection, not both" in r.output
    r = run("ingest", str(pdf_factory("hand.pdf", ["The office opens at 8 am."])), "--collection", "knowledge")
    assert r.exit_code == 0

    r = run("kb", "list")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("default\t1 documents\t1 passages\t")
    assert lines[1] == "clinic\t1 documents\t2 passages\tPatient leaflets and QPLs.\tread: everyone\tmanage: admins"

    r = run("kb", "docs", "clinic")
    [row] = r.stdout.splitlines()
    cols = row.split("\t")
    assert cols[:3] == ["fever.pdf", "2 pages", "2 passages"] and cols[3].startswith("cli")
    assert cols[4].endswith(" UTC") and cols[5] == str(pdf.resolve())
    r = run("kb", "docs", "nope")
    assert r.exit_code == 1 and "unknown knowledge base 'nope'" in r.output

    # a persona bound to clinic: `ask --persona doctor` searches clinic, not the default base
    from tests.stubs.llm import StubLLM

    with StubLLM() as stub:
        monkeypatch.setenv("KBCHAT_LLM_BASE_URL", stub.base_url)
        monkeypatch.setenv("KBCHAT_LLM_MODEL", "stub")
        r = run("ask", "What to do about fever in children?", "--persona", "doctor", "--json")
    assert r.exit_code == 0, r.output
    import json

    sources = {h["source"] for h in json.loads(r.stdout)["hits"]}
    assert sources == {"fever.pdf"}

    r = run("kb", "remove", "clinic", "nope.pdf")
    assert r.exit_code == 1 and "Error: no document 'nope.pdf' in this knowledge base" in r.output
    r = run("kb", "remove", "clinic", "fever.pdf")
    assert r.exit_code == 0 and "removed fever.pdf (2 passages) from 'clinic'" in r.output
    assert pdf.is_file()  # the CLI's own file is never deleted
    assert run("kb", "docs", "clinic").stdout == ""
