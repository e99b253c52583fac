"""The UI's own lines (kbchat.messages) are complete in all five languages: every key in every language,
no language with a key English lacks, the same placeholders everywhere, every key the code asks for
exists, no English sentence left in a translation; errors and reasons of the core are shown in the UI
language while the English lines stay what they were."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from kbchat.messages import MESSAGES, error_text, reason_text, t

REPO = Path(__file__).resolve().parent.parent
LANGS = ["en", "zh-TW", "zh-CN", "ja", "ko"]
# Words that are names, not English sentences: commands, file types, products, column names.
ALLOWED = ["kbchat kb create", "kbchat kb docs", "apt-get install", "kbchat export", "kbchat sync"]
ENGLISH_RUN = re.compile(r"[A-Za-z][A-Za-z'’-]*(?:\s+[A-Za-z][A-Za-z'’-]*){2,}")


def _fields(text: str) -> list[tuple[str, str]]:
    return sorted({(f, spec or "") for _lit, f, spec, _conv in string.Formatter().parse(text) if f is not None})


def test_the_five_languages_are_there():
    assert sorted(MESSAGES) == sorted(LANGS)


@pytest.mark.parametrize("lang", LANGS[1:])
def test_every_key_in_every_language(lang):
    missing = sorted(set(MESSAGES["en"]) - set(MESSAGES[lang]))
    extra = sorted(set(MESSAGES[lang]) - set(MESSAGES["en"]))
    assert not missing, f"{lang} lacks {missing}"
    assert not extra, f"{lang} has keys English lacks: {extra}"


@pytest.mark.parametrize("lang", LANGS[1:])
def test_placeholders_are_the_same(lang):
    differ = {k: (_fields(MESSAGES["en"][k]), _fields(v)) for k, v in MESSAGES[lang].items()
              if k in MESSAGES["en"] and _fields(v) != _fields(MESSAGES["en"][k])}
    assert not differ, f"{lang}: placeholders differ from English: {differ}"


@pytest.mark.parametrize("lang", LANGS)
def test_every_line_formats(lang):
    for key, text in MESSAGES[lang].items():
        params = {f: (1234 if spec else "x") for f, spec in _fields(text)}
        assert t(lang, key, **params), key


@pytest.mark.parametrize("lang", LANGS[1:])
def test_no_english_sentence_in_a_translation(lang):
    """Three or more Latin words in a row (outside placeholders, `code` and the names in ALLOWED) is an
    English sentence left untranslated."""
    found = {}
    for key, text in MESSAGES[lang].items():
        plain = re.sub(r"\{[^}]*\}", "〇", text)
        plain = re.sub(r"`[^`]*`", "〇", plain)
        for name in ALLOWED:
            plain = plain.replace(name, "〇")
        plain = re.sub(r"instruction / input / output, question / answer", "〇", plain)
        if ENGLISH_RUN.search(plain):
            found[key] = ENGLISH_RUN.search(plain).group(0)
    assert not found, f"{lang}: English left in {found}"


def _keys_the_code_uses() -> dict[str, list[str]]:
    """Literal keys in kbchat/: t(lang, "key"), an error's key="key" and kbchat.answer's _err(Class, "key")."""
    used: dict[str, list[str]] = {}
    calls = [re.compile(r"""\bt\(\s*[^,()]+(?:\([^()]*\))?\s*,\s*["']([a-z_][a-z0-9_-]*)["']"""),
             re.compile(r"""\bkey=["']([a-z_][a-z0-9_-]*)["']"""),
             re.compile(r"""\b_err\(\s*\w+\s*,\s*["']([a-z_][a-z0-9_-]*)["']""")]
    for path in sorted((REPO / "kbchat").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for key in (k for call in calls for k in call.findall(text)):
            used.setdefault(key, []).append(path.relative_to(REPO).as_posix())
    return used


def test_keys_the_code_uses_exist():
    used = _keys_the_code_uses()
    assert len(used) > 60  # the scan finds the calls (ui/handlers, ui/bases, ui/review, render, answer…)
    for module in ("kbchat/ui/handlers.py", "kbchat/ui/bases.py", "kbchat/ui/review.py", "kbchat/ui/render.py",
                   "kbchat/answer.py", "kbchat/ui/routes.py"):
        assert any(module in files for files in used.values()), module
    missing = {k: files for k, files in used.items() if k not in MESSAGES["en"]}
    assert not missing, f"keys used but not in kbchat.messages: {missing}"


def test_keys_made_at_run_time_exist():
    """Keys put together in code: the review's buttons and decisions, record origins, progress stages."""
    for kind in ("approve", "edit", "reject", "skip", "import"):
        assert f"review_{kind}" in MESSAGES["en"] and f"review_{kind}_tip" in MESSAGES["en"]
    for status in ("approved", "rejected"):
        assert f"review_{status}" in MESSAGES["en"]
    for origin in ("share", "import"):
        assert f"review_origin_{origin}" in MESSAGES["en"]
    for stage in ("reading", "reading_ocr", "embedding"):
        assert stage in MESSAGES["en"]
    for state in ("active", "revoked", "expired"):  # kbchat.ui.keys: an API key's state
        assert f"api_state_{state}" in MESSAGES["en"]


def test_every_user_facing_string_literal_of_the_ui_goes_through_t():
    """No Message(content="English…"), label="…", tooltip="…" or description="…" literal left in kbchat/ui."""
    literal = re.compile(r"""\b(content|label|tooltip|description)=f?["'][A-Za-z]""")
    found = [f"{p.name}:{i}: {line.strip()}" for p in sorted((REPO / "kbchat" / "ui").glob("*.py"))
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert not found, found


# ---------------------------------------------------------------- errors of the core in the UI language


def _unreachable():
    import httpx

    from kbchat.answer import _map_error

    class Llm:
        openai_api_base = "http://127.0.0.1:9/v1"
        model_name = "stub"

    err = httpx.ConnectError("[Errno 111] Connection refused")
    return _map_error(err, Llm(), got_any=False)


def test_llm_down_notice_keeps_its_english_and_is_translated():
    from kbchat.errors import LLMUnreachable

    err = _unreachable()
    assert isinstance(err, LLMUnreachable)
    assert err.key == "llm_unreachable"
    url = err.params["url"]
    assert str(err) == f"The language model at {url} could not be reached (connection refused)."
    assert error_text("en", err) == str(err)
    zh = error_text("zh-TW", err)
    assert zh == f"無法連線到位於 {url} 的語言模型（連線被拒）。"
    assert t("zh-TW", "llm_failed", error=zh).startswith("⚠️ 無法連線")
    for lang in ("zh-CN", "ja", "ko"):
        text = error_text(lang, err)
        assert url in text and "could not" not in text and "refused" not in text, (lang, text)


def test_every_literal_upload_reason_is_translated():
    """Each literal IngestError reason in kbchat/documents has its why_* line (zh-TW differs from English)."""
    literal = re.compile(r"""IngestError\(\s*name\s*,\s*["']([^"'{}]+)["']\s*\)""")
    reasons = {r for p in (REPO / "kbchat" / "documents").glob("*.py")
               for r in literal.findall(p.read_text(encoding="utf-8"))}
    assert {"not a PDF", "empty file (0 bytes)", "password-protected"} <= reasons
    for reason in reasons:
        for lang in LANGS[1:]:
            assert reason_text(lang, reason) != reason, (lang, reason)
        assert reason_text("en", reason) == reason


@pytest.mark.parametrize("reason, zh", [
    ("too many pages (2500, limit 2000)", "頁數過多（2500 頁，上限 2000 頁）"),
    ("empty question and answer", "問題與答案皆為空白"),
    ("empty question", "問題為空白"),
    ("cannot read file (Permission denied)", "無法讀取檔案（Permission denied）"),
    ("something new the UI does not know", "something new the UI does not know"),  # kept, not lost
])
def test_reasons_with_values(reason, zh):
    assert reason_text("zh-TW", reason) == zh


def test_knowledge_base_errors_keep_english_and_are_translated(settings):
    from kbchat.errors import KbchatError
    from kbchat.knowledge import create_base, get_base

    with pytest.raises(KbchatError) as e:
        get_base(settings, "nope")
    assert str(e.value) == ("unknown knowledge base 'nope' (known: default); create it with: "
                            "kbchat kb create nope")
    assert error_text("zh-TW", e.value).startswith("沒有名為「nope」的知識庫")
    with pytest.raises(KbchatError) as e:
        create_base(settings, "Bad Name")
    assert "not a knowledge-base name: 'Bad Name'" in str(e.value)
    assert "不能作為知識庫名稱" in error_text("zh-TW", e.value)


# ---------------------------------------------------------------- base descriptions per language


def test_base_description_per_language(tmp_path):
    from kbchat.knowledge import _base_files, read_description

    folder = tmp_path / "clinic"
    folder.mkdir()
    (folder / "README.md").write_text("# clinic\n\nPatient leaflets.\n", encoding="utf-8")
    (folder / "README.zh-TW.md").write_text("# clinic\n\n病患衛教單張。\n", encoding="utf-8")
    (folder / "README.ja.md").write_text("# clinic\n\n患者向けリーフレット。\n", encoding="utf-8")
    (folder / "leaflet.md").write_text("# Fever\n\nDrink water.\n", encoding="utf-8")
    assert read_description(folder) == "Patient leaflets."
    assert read_description(folder, "en-US") == "Patient leaflets."
    assert read_description(folder, "zh-TW") == "病患衛教單張。"
    assert read_description(folder, "zh-Hant-HK") == "病患衛教單張。"
    assert read_description(folder, "ja-JP") == "患者向けリーフレット。"
    assert read_description(folder, "ko") == "Patient leaflets."  # no README.ko.md: English
    assert read_description(folder, "zh-CN") == "Patient leaflets."
    # the descriptions are not documents of the base
    assert [p.name for p in _base_files(folder, top=False)] == ["leaflet.md"]


def test_the_shipped_clinic_base_is_described_in_every_language():
    from kbchat.knowledge import read_description

    folder = REPO / "knowledge" / "clinic"
    english = read_description(folder)
    assert english.startswith("Patient-information leaflets")
    for lang in LANGS[1:]:
        text = read_description(folder, lang)
        assert text and text != english and not ENGLISH_RUN.search(text), (lang, text)


# ---------------------------------------------------------------- the review card


def test_review_card_in_traditional_chinese_has_no_english_sentence():
    from kbchat.sharing.store import SharedQA
    from kbchat.ui.review import record_text

    r = SharedQA(user="alice", persona_id="general", question="上傳的檔案屬於誰？", answer="屬於這個對話。",
                 sources=[{"n": 1, "file": "說明.pdf", "page": 2, "text": "上傳的檔案只屬於這個對話。"}],
                 answer_key="a1", edited_answer="只屬於這個對話。")
    zh = record_text(r, 3, "zh-TW")
    assert "**3 筆待審**" in zh and "分享者 **alice**" in zh and "說明.pdf, 第 2 頁" in zh
    assert not ENGLISH_RUN.search(zh), zh
    en = record_text(r, 3)
    assert "**Review shared Q&A** · **3 pending** (this one included)" in en
    assert "Persona **general** · shared by **alice**" in en and "說明.pdf, page 2" in en
    assert "**Answer (edited — this is what export writes)**" in en


def test_source_pills_follow_the_ui_language():
    from types import SimpleNamespace

    from kbchat.ui.render import render

    hit = SimpleNamespace(text="上傳的檔案只屬於這個對話。", source="說明.pdf", page=2, page_label=None,
                          passage=SimpleNamespace(ocr=False))
    body, _ = render("屬於這個對話 [1]。", [hit], [], "zh-TW")
    assert "(來源 1)" in body and "- 來源 1 — 說明.pdf, 第 2 頁" in body
    body, _ = render("It is [1].", [hit], [], "en")
    assert "(Source 1)" in body and "- Source 1 — 說明.pdf, page 2" in body


def test_review_card_and_export_cite_a_sheet_row_as_a_row():
    """A passage of an imported QA sheet is "row N" in the review card and the export, as in answers
    (it had been "clinic-faq.xlsx, page 2")."""
    from kbchat.sharing.export import source_ref
    from kbchat.sharing.store import SharedQA
    from kbchat.ui.review import record_text

    row = {"n": 1, "file": "clinic-faq.xlsx", "page": 2, "page_label": "row 2", "text": "Q: phone? A: 02-5550-1234"}
    r = SharedQA(user="alice", persona_id="general", question="phone?", answer="02-5550-1234 [1]",
                 sources=[row], answer_key="a2")
    assert "clinic-faq.xlsx, row 2" in record_text(r, 1) and "page 2" not in record_text(r, 1)
    assert "clinic-faq.xlsx, 第 2 列" in record_text(r, 1, "zh-TW")
    assert source_ref(row) == "clinic-faq.xlsx row 2"
    assert source_ref({"file": "a.pdf", "page": 3}) == "a.pdf p.3"
