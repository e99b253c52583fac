"""Persona files: every shipped file loads; invalid files fail naming the file and the field."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from kbchat.errors import ConfigError
from kbchat.personas import ANSWER_LANGUAGE_RULE, Persona, load_persona, load_personas, resolve_language

REPO = Path(__file__).resolve().parent.parent
PERSONAS = REPO / "personas"
LANGS = ("en", "zh-TW", "zh-CN", "ja", "ko")
SHIPPED = ("general", "doctor", "analyst", "clinic-qpl")


def _valid(pid: str = "sample", **changes) -> dict:
    data = {
        "id": pid,
        "default": False,
        "icon": f"/public/personas/{pid}.svg",
        "name": {"en": "Sample", "zh-TW": "範例", "zh-CN": "示例"},
        "description": {"en": "A sample persona."},
        "prompt": {"situation": "You are a sample.", "task": "Answer.", "constraints": ["Cite like [1]."]},
        "examples": [{"user": "Hi", "assistant": "Hello [1]."}],
        "starters": {"en": [{"label": "Hello", "message": "Say hello"}],
                     "zh-TW": [{"label": "你好", "message": "說你好"}]},
        "retrieval": {"k": 5, "use_shared_knowledge": True},
        "temperature": 0.2,
        "reasoning_default": False,
    }
    data.update(changes)
    return data


def _write(folder: Path, name: str, data: dict | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    text = data if isinstance(data, str) else yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    return path


# --- shipped content -------------------------------------------------------------------------


def test_shipped_personas_load_with_default_first():
    personas = load_personas(PERSONAS)
    assert set(SHIPPED) <= set(personas)
    assert next(iter(personas)) == "general"
    assert [p.id for p in personas.values() if p.default] == ["general"]


@pytest.mark.parametrize("pid", SHIPPED)
def test_shipped_persona_is_complete(pid):
    p = load_persona(PERSONAS / f"{pid}.yaml")
    for lang in LANGS:
        assert lang in p.name and lang in p.description, lang
        assert p.starters.get(lang), f"{pid}: no {lang} starters"
    assert 1 <= len(p.examples) <= 2
    assert any(re.search(r"\[\d+\]", ex.assistant) for ex in p.examples), "examples should cite like [1]"
    icon = REPO / p.icon.removeprefix("/")
    assert icon.is_file(), f"missing icon {icon}"
    assert icon.read_text(encoding="utf-8").lstrip().startswith("<svg")


def test_clinic_qpl_has_headache_starters():
    p = load_persona(PERSONAS / "clinic-qpl.yaml")
    assert "I've had a headache for several days." in [s.message for s in p.starters_for("en")]
    assert "我頭痛好幾天了" in [s.message for s in p.starters_for("zh-TW")]


# --- behaviour ---------------------------------------------------------------------------------


def test_system_prompt_contains_situation_task_constraints_and_language_rule():
    p = Persona.model_validate(_valid(prompt={
        "situation": "You are a careful librarian.",
        "task": "Find the right shelf.",
        "constraints": ["Never guess.", "Cite like [1]."],
    }))
    text = p.system_prompt()
    for part in ("You are a careful librarian.", "Find the right shelf.", "Never guess.", "Cite like [1].",
                 ANSWER_LANGUAGE_RULE):
        assert part in text
    assert text.index("Never guess.") < text.index(ANSWER_LANGUAGE_RULE)


def test_shipped_system_prompts_contain_their_constraints():
    for p in load_personas(PERSONAS).values():
        for rule in p.prompt.constraints:
            assert rule in p.system_prompt()


def test_few_shot_pairs():
    p = Persona.model_validate(_valid(examples=[{"user": "Q1", "assistant": "A1 [1]"},
                                                 {"user": "Q2", "assistant": "A2 [2]"}]))
    assert p.few_shot() == [("user", "Q1"), ("assistant", "A1 [1]"), ("user", "Q2"), ("assistant", "A2 [2]")]


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("zh-TW", "zh-TW"),
        ("zh-Hant-TW", "zh-TW"),
        ("zh-Hant", "zh-TW"),
        ("zh-HK", "zh-TW"),
        ("zh-MO", "zh-TW"),
        ("zh_TW", "zh-TW"),
        ("zh", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-SG", "zh-CN"),
        ("ja-JP", "ja"),
        ("ko-KR", "ko"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("fr-FR", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_fallback(lang, expected):
    assert resolve_language(lang, LANGS) == expected


def test_persona_texts_follow_the_fallback():
    p = Persona.model_validate(_valid(name={"en": "Sample", "zh-TW": "範例", "zh-CN": "示例", "ja": "サンプル"}))
    assert p.display_name("zh-Hant-TW") == "範例"
    assert p.display_name("zh") == "示例"
    assert p.display_name("ja-JP") == "サンプル"
    assert p.display_name("fr") == "Sample"
    assert p.describe("zh-TW") == "A sample persona."  # only en exists
    assert p.starters_for("zh-HK")[0].label == "你好"
    assert p.starters_for("ko-KR")[0].label == "Hello"


def test_traditional_chinese_does_not_fall_to_simplified():
    # zh-Hant without a zh-TW entry goes to English rather than Simplified Chinese.
    assert resolve_language("zh-Hant-TW", ["en", "zh-CN"]) == "en"


# --- invalid files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"mood": "cheerful"}, "mood", "Extra inputs are not permitted"),
        ({"prompt": {"situation": "s", "task": "t", "constraints": [], "tone": "x"}}, "prompt.tone", "Extra"),
        ({"retrieval": {"k": 50, "use_shared_knowledge": True}}, "retrieval.k", "less than or equal to 20"),
        ({"retrieval": {"k": 0, "use_shared_knowledge": True}}, "retrieval.k", "greater than or equal to 1"),
        ({"name": {"zh-TW": "範例"}}, "name", "'en'"),
        ({"starters": {"zh-TW": [{"label": "a", "message": "b"}]}}, "starters", "'en'"),
        ({"starters": {"en": [{"label": "a"}]}}, "starters.en[0].message", "required"),
        ({"temperature": 3}, "temperature", "less than or equal to 2"),
        ({"icon": "https://example.com/x.svg"}, "icon", "pattern"),
    ],
)
def test_invalid_persona_names_file_and_field(tmp_path, changes, field, words):
    path = _write(tmp_path / "personas", "sample", _valid(**changes))
    with pytest.raises(ConfigError) as err:
        load_personas(tmp_path / "personas")
    msg = str(err.value)
    assert str(path) in msg
    assert f"field '{field}'" in msg
    assert words in msg


def test_error_message_format(tmp_path):
    folder = tmp_path / "personas"
    _write(folder, "doctor", _valid("doctor", retrieval={"k": 21, "use_shared_knowledge": True}))
    with pytest.raises(ConfigError, match=r"doctor\.yaml: field 'retrieval\.k': Input should be less than or equal to 20"):
        load_personas(folder)


def test_broken_yaml_names_file_and_line(tmp_path):
    path = _write(tmp_path / "p", "sample", "id: sample\nname: {en: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_personas(tmp_path / "p")
    assert str(path) in str(err.value) and "invalid YAML" in str(err.value) and "line" in str(err.value)


def test_yaml_that_is_not_a_mapping(tmp_path):
    _write(tmp_path / "p", "sample", "- just\n- a list\n")
    with pytest.raises(ConfigError, match="sample.yaml: expected a mapping"):
        load_personas(tmp_path / "p")


def test_two_defaults_rejected(tmp_path):
    folder = tmp_path / "personas"
    _write(folder, "a", _valid("a", default=True))
    _write(folder, "b", _valid("b", default=True))
    with pytest.raises(ConfigError) as err:
        load_personas(folder)
    msg = str(err.value)
    assert "field 'default'" in msg and "a.yaml" in msg and "b.yaml" in msg


def test_no_default_rejected(tmp_path):
    folder = tmp_path / "personas"
    _write(folder, "a", _valid("a"))
    with pytest.raises(ConfigError, match="field 'default'"):
        load_personas(folder)


def test_id_must_match_file_stem(tmp_path):
    path = _write(tmp_path / "personas", "nurse", _valid("doctor", default=True))
    with pytest.raises(ConfigError) as err:
        load_personas(tmp_path / "personas")
    assert str(path) in str(err.value) and "field 'id'" in str(err.value)


def test_missing_or_empty_folder(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_personas(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no persona files"):
        load_personas(tmp_path / "empty")


def test_order_is_file_order_with_default_first(tmp_path):
    folder = tmp_path / "personas"
    for pid in ("c", "a", "b"):
        _write(folder, pid, _valid(pid, default=(pid == "b")))
    assert list(load_personas(folder)) == ["b", "a", "c"]


# --- UI config and assets -----------------------------------------------------------------------


def test_chainlit_config_is_explicit():
    cfg = tomllib.loads((REPO / ".chainlit" / "config.toml").read_text(encoding="utf-8"))
    upload = cfg["features"]["spontaneous_file_upload"]
    assert upload["enabled"] is True
    assert upload["max_files"] == 10 and upload["max_size_mb"] == 50
    # the upload dialog accepts exactly what kbchat can read (and nothing else), by type and extension
    from kbchat.documents.reader import ACCEPT, SUPPORTED_TYPES

    accept = upload["accept"]
    assert all(set(exts) <= set(accept.get(mime, [])) for mime, exts in ACCEPT.items())
    assert {e for exts in accept.values() for e in exts} == set(SUPPORTED_TYPES)
    assert cfg["features"]["unsafe_allow_html"] is False
    assert cfg["features"]["auto_tag_thread"] is False
    assert cfg["project"]["session_timeout"] == 3600
    assert cfg["UI"]["name"] == "kbchat"
    assert cfg["meta"]["generated_by"] == "2.12.0"


def test_traditional_chinese_translations_are_shipped():
    folder = REPO / ".chainlit" / "translations"
    zh_tw = json.loads((folder / "zh-TW.json").read_text(encoding="utf-8"))
    for name in ("zh-Hant", "zh-Hant-TW"):
        assert json.loads((folder / f"{name}.json").read_text(encoding="utf-8")) == zh_tw
    for name in ("en-US", "zh-CN", "ja", "ko"):
        assert (folder / f"{name}.json").is_file()


def test_theme_uses_no_external_fonts():
    theme = json.loads((REPO / "public" / "theme.json").read_text(encoding="utf-8"))
    assert theme["custom_fonts"] == []
    assert "http" not in json.dumps(theme)
    for name in ("logo_light.svg", "logo_dark.svg", "favicon.svg"):
        assert (REPO / "public" / name).is_file()
