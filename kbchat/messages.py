"""The app's own user-facing lines in each UI language (Chainlit translates only its own UI)."""

from __future__ import annotations

import re
import string

from kbchat.documents.passages import row_of
from kbchat.locales import en, zh_tw, zh_cn, ja, ko
from kbchat.personas import resolve_language

MESSAGES: dict[str, dict[str, str]] = {
    "en": en.LINES,
    "zh-TW": zh_tw.LINES,
    "zh-CN": zh_cn.LINES,
    "ja": ja.LINES,
    "ko": ko.LINES,
}


def t(lang: str | None, key: str, /, **kw) -> str:
    """The line ``key`` in the best available language for ``lang`` (falls back to English)."""
    table = MESSAGES[resolve_language(lang, MESSAGES)]
    return table.get(key, MESSAGES["en"][key]).format(**kw)


def _pattern(template: str) -> re.Pattern:
    """A regex matching the English ``template`` with each ``{field}`` captured."""
    out = []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        out.append(re.escape(literal))
        if field is not None:
            out.append(f"(?P<{field}>.+?)")
    return re.compile("^" + "".join(out) + "$", re.S)


# Reasons the core gives in English (kbchat.documents' IngestError.reason, network causes, sheet rows): the
# why_* lines, matched longest first so "empty question and answer" is not taken for "empty question".
_REASONS = sorted(((k, _pattern(v)) for k, v in MESSAGES["en"].items() if k.startswith("why_")),
                  key=lambda kv: -len(MESSAGES["en"][kv[0]]))


def reason_text(lang: str | None, reason: str) -> str:
    """A reason of the core (English, e.g. "not a PDF") in the UI language; unknown ones stay as they are."""
    reason = str(reason)
    if resolve_language(lang, MESSAGES) == "en":
        return reason
    for key, pattern in _REASONS:
        m = pattern.match(reason)
        if m:
            return t(lang, key, **m.groupdict())
    return reason


def error_text(lang: str | None, err: BaseException) -> str:
    """An error's line in the UI language: its message key and parameters when it has them (kbchat.errors),
    an upload's reason (IngestError), else its English text."""
    key = getattr(err, "key", None)
    if key and key in MESSAGES["en"]:
        params = dict(getattr(err, "params", {}) or {})
        if "reason" in params:
            params["reason"] = reason_text(lang, params["reason"])
        return t(lang, key, **params)
    if getattr(err, "reason", None) and getattr(err, "file", None):
        return f"{err.file}: {reason_text(lang, err.reason)}"
    return reason_text(lang, str(err))


def page_ref(lang: str | None, page: int, *, scanned: bool = False) -> str:
    """'page 3' / '第 3 頁' / '3 ページ' in the UI language; with ``scanned`` (an OCR'd passage)
    'page 3, scanned' / '第 3 頁（掃描）' / '3 ページ（スキャン）'."""
    code = resolve_language(lang, MESSAGES)
    if code == "zh-TW":
        ref = f"第 {page} 頁"
    elif code == "zh-CN":
        ref = f"第 {page} 页"
    elif code == "ja":
        ref = f"{page} ページ"
    elif code == "ko":
        ref = f"{page}페이지"
    else:
        ref = f"page {page}"
    if not scanned:
        return ref
    word = MESSAGES[code]["scanned"]
    return f"{ref}, {word}" if code == "en" else (f"{ref} ({word})" if code == "ko" else f"{ref}（{word}）")


_ROW_REF = {"en": "row {n}", "zh-TW": "第 {n} 列", "zh-CN": "第 {n} 行", "ja": "{n} 行目", "ko": "{n}행"}


def place_ref(lang: str | None, page: int, page_label: str | None = None, *, scanned: bool = False) -> str:
    """Where a passage is: 'row 3' for a row of an imported QA sheet (kbchat.sharing.sheets), else
    'page 3' (with ', scanned' and the printed label '(printed iv)' when there is one)."""
    row = row_of(page, page_label)
    if row is not None:
        return _ROW_REF[resolve_language(lang, MESSAGES)].format(n=row)
    label = f" ({t(lang, 'printed')} {page_label})" if page_label else ""
    return page_ref(lang, page, scanned=scanned) + label
