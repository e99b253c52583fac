"""What a fine-tuning run would get from the shared records: counts by status, origin, persona and
language, duplicates skipped, and the token-length distribution of approved pairs as a terminal histogram
(``kbchat shared stats``). Token counts are estimates (no tokenizer of the model to be trained is known):
one per CJK character, 4/3 per other word, one per other punctuation mark."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from statistics import median
from typing import Iterable

from kbchat.sharing.store import SharedQA

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_LATIN = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[^\W\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_PUNCT = re.compile(r"[^\w\s]")

# Frequent characters whose Traditional and Simplified forms differ (same order in both strings).
_TRAD = "這個們來說時為會對國學麼後電開關問題與還點當經發現進動體裡種樣過頭實應從處應專業醫療腸胃藥檢查"
_SIMP = "这个们来说时为会对国学么后电开关问题与还点当经发现进动体里种样过头实应从处应专业医疗肠胃药检查"
_TRAD_ONLY = set(_TRAD) - set(_SIMP)
_SIMP_ONLY = set(_SIMP) - set(_TRAD)

BUCKETS = (32, 64, 128, 256, 512, 1024, 2048)
BAR = 40


def language_of(text: str) -> str:
    """A rough language tag by script: zh-Hant, zh-Hans (zh when no character tells them apart), ja, ko,
    latin (Latin script) or other."""
    han, kana, hangul, latin = (len(p.findall(text)) for p in (_HAN, _KANA, _HANGUL, _LATIN))
    if kana and kana * 5 >= han / 2:
        return "ja"
    if hangul and hangul >= han:
        return "ko"
    if han and han * 4 >= latin:
        trad = sum(ch in _TRAD_ONLY for ch in text)
        simp = sum(ch in _SIMP_ONLY for ch in text)
        if trad == simp:
            return "zh"  # no character that tells the two scripts apart
        return "zh-Hans" if simp > trad else "zh-Hant"
    return "latin" if latin else "other"


def estimate_tokens(text: str) -> int:
    """Estimated tokens of ``text`` (see the module docstring)."""
    cjk = len(_CJK.findall(text))
    words = len(_WORD.findall(_CJK.sub(" ", text)))
    punct = len(_PUNCT.findall(_CJK.sub(" ", text)))
    return cjk + round(words * 4 / 3) + punct


@dataclass
class Stats:
    """Counts over the records and the token lengths of approved pairs (question + input + answer)."""

    total: int = 0
    by_status: Counter = field(default_factory=Counter)
    by_origin: Counter = field(default_factory=Counter)
    by_persona: Counter = field(default_factory=Counter)
    by_language: Counter = field(default_factory=Counter)
    duplicates_skipped: int = 0
    lengths: list[int] = field(default_factory=list)


def dataset_stats(records: Iterable[SharedQA], duplicates_skipped: int = 0) -> Stats:
    """Count the records; token lengths of the approved ones (the answer an export writes)."""
    s = Stats(duplicates_skipped=duplicates_skipped)
    for r in records:
        s.total += 1
        s.by_status[r.status] += 1
        s.by_origin[r.origin] += 1
        s.by_persona[r.persona_id or "(none)"] += 1
        s.by_language[language_of(r.question + "\n" + r.final_answer)] += 1
        if r.status == "approved":
            s.lengths.append(estimate_tokens(f"{r.question}\n{r.context}\n{r.final_answer}"))
    return s


def _table(title: str, counts: Counter, total: int) -> list[str]:
    lines = [title]
    for key, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  {key:<24} {n:>7,}  {100 * n / total:5.1f}%" if total else f"  {key:<24} {n:>7,}")
    return lines


def histogram(lengths: list[int]) -> list[str]:
    """A text histogram of token lengths in power-of-two buckets, bars scaled to the largest bucket."""
    if not lengths:
        return ["  (no approved pairs)"]
    edges = [0, *BUCKETS]
    counts = [sum(lo <= x < hi for x in lengths) for lo, hi in zip(edges, edges[1:])]
    counts.append(sum(x >= BUCKETS[-1] for x in lengths))
    labels = [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])] + [f"{BUCKETS[-1]}+"]
    top = max(counts)
    lines = []
    for label, n in zip(labels, counts):
        bar = "█" * round(BAR * n / top) if n else ""
        if n and not bar:
            bar = "▏"
        lines.append(f"  {label:>9} │{bar:<{BAR}} {n:>6,}  {100 * n / len(lengths):5.1f}%")
    ordered = sorted(lengths)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    lines.append(f"  min {ordered[0]:,} · median {median(ordered):,.0f} · p90 {p90:,} · max {ordered[-1]:,} · "
                 f"total {sum(ordered):,} tokens (estimated)")
    return lines


def format_stats(s: Stats) -> str:
    """The report ``kbchat shared stats`` prints."""
    lines = [f"{s.total:,} record(s); {s.by_status.get('approved', 0):,} approved would be exported "
             f"(kbchat export), {s.by_status.get('pending', 0):,} pending review", ""]
    lines += _table("By status", s.by_status, s.total) + [""]
    lines += _table("By origin", s.by_origin, s.total) + [""]
    lines += _table("By persona", s.by_persona, s.total) + [""]
    lines += _table("By language (script of question + answer)", s.by_language, s.total) + [""]
    lines.append(f"Exact duplicates skipped by imports: {s.duplicates_skipped:,}")
    lines.append("")
    lines.append(f"Token length of approved pairs (question + input + answer), {len(s.lengths):,} pair(s):")
    lines += histogram(s.lengths)
    return "\n".join(lines) + "\n"


__all__ = ["Stats", "dataset_stats", "estimate_tokens", "format_stats", "histogram", "language_of"]
