"""A dataset snapshot for fine-tuning from the approved shared and imported Q&A: train/eval splits in the
chat (`messages`) format with the persona's system prompt, preference pairs from review edits, a split that
keeps near-duplicate questions on one side, and the dataset card with the provenance of every row."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from statistics import median
from typing import Any, Iterable

from kbchat.errors import FinetuneError
from kbchat.sharing.export import format_context, redact_record
from kbchat.sharing.stats import estimate_tokens, language_of
from kbchat.sharing.store import SharedQA

MIN_PAIRS = 20          # below this a LoRA run learns nothing useful; LIMA used 1,000 careful pairs
NEAR_DUPLICATE = 0.8    # Jaccard similarity of character trigrams at or above which two questions are one
NGRAM = 3
FILES = ("train.jsonl", "eval.jsonl", "preference.jsonl")

_NOT_WORD = re.compile(r"[\W_]+")


def normalise(text: str) -> str:
    """The question as compared for near-duplicates: NFKC, case-folded, punctuation and blanks removed."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())


def char_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """Character n-grams of the normalised text (the whole text when shorter than n)."""
    t = normalise(text)
    return {t[i:i + n] for i in range(len(t) - n + 1)} or {t}


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of the two texts' character trigrams (works for Chinese as for English)."""
    x, y = char_ngrams(a), char_ngrams(b)
    return len(x & y) / len(x | y) if x | y else 1.0


def near_duplicate_groups(questions: list[str], threshold: float = NEAR_DUPLICATE) -> list[list[int]]:
    """Indices of ``questions`` grouped so that equal-after-normalising or similar questions share a group."""
    parent = list(range(len(questions)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    grams = [char_ngrams(q) for q in questions]
    for i in range(len(questions)):
        for j in range(i):
            union = grams[i] | grams[j]
            if union and len(grams[i] & grams[j]) / len(union) >= threshold:
                parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(questions)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def split_indices(questions: list[str], eval_share: float) -> tuple[list[int], list[int]]:
    """(train, eval) indices: whole near-duplicate groups go to one side; the choice is deterministic
    (groups ordered by a hash of their first question) so the same records give the same split."""
    groups = near_duplicate_groups(questions)
    groups.sort(key=lambda g: hashlib.sha256(normalise(questions[g[0]]).encode()).hexdigest())
    want = round(eval_share * len(questions))
    if eval_share > 0 and len(groups) > 1:
        want = max(want, 1)
    evals: list[int] = []
    for g in groups[:-1]:  # the last group always stays in train
        if len(evals) >= want:
            break
        if evals and len(evals) + len(g) > want:
            continue  # a large group would overshoot: try the next one
        evals += g
    taken = set(evals)
    return sorted(i for i in range(len(questions)) if i not in taken), sorted(evals)


@dataclass
class Row:
    """One training example and where it came from."""

    record: SharedQA
    persona: str
    messages: list[dict[str, str]]
    has_passages: bool

    @property
    def language(self) -> str:
        return language_of(self.record.question + "\n" + self.record.final_answer)

    @property
    def tokens(self) -> int:
        return sum(estimate_tokens(m["content"]) for m in self.messages)


@dataclass
class Snapshot:
    """What `prepare_dataset` wrote: the snapshot id, the rows of each split and the preference pairs."""

    id: str
    folder: Path
    train: list[Row]
    eval: list[Row]
    preference: list[dict[str, Any]]
    preference_ids: list[str]
    options: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: counts and the snapshot id."""
        return (f"{self.folder}: {len(self.train)} train, {len(self.eval)} eval, {len(self.preference)} "
                f"preference pair(s); snapshot {self.id}")


def user_text(record: SharedQA, with_context: bool) -> tuple[str, bool]:
    """The user turn: the question, or with ``with_context`` the numbered passages it was answered from
    followed by the question (when it has any); and whether passages were given."""
    context = format_context(record) if with_context else ""
    if not context:
        return record.question, False
    return f"Passages:\n{context}\n\nQuestion: {record.question}", True


def system_prompt(record: SharedQA, personas: dict[str, Any]) -> tuple[str, str]:
    """(persona id, system prompt): the record's persona from the personas folder, else the prompt stored
    with the record, else the default persona (the first of ``personas``)."""
    if record.persona_id in personas:
        return record.persona_id, personas[record.persona_id].system_prompt()
    if record.persona_prompt.strip():
        return record.persona_id or "(none)", record.persona_prompt
    default = next(iter(personas.values()), None)
    return (default.id, default.system_prompt()) if default else ("(none)", "")


def to_row(record: SharedQA, personas: dict[str, Any], with_context: bool) -> Row:
    """The record as a chat example (system, user, assistant = the reviewed answer)."""
    persona, system = system_prompt(record, personas)
    user, has_passages = user_text(record, with_context)
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}, {"role": "assistant", "content": record.final_answer}]
    return Row(record=record, persona=persona, messages=messages, has_passages=has_passages)


def preference_pair(row: Row) -> dict[str, Any] | None:
    """A DPO pair (TRL's conversational preference format) from a review edit: the admin's edited answer
    chosen, the original rejected. None when the record was not edited."""
    r = row.record
    if r.edited_answer is None or r.edited_answer.strip() == r.answer.strip():
        return None
    return {"prompt": row.messages[:-1], "chosen": [{"role": "assistant", "content": r.edited_answer}],
            "rejected": [{"role": "assistant", "content": r.answer}]}


def _jsonl(path: Path, items: Iterable[dict]) -> None:
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")


def prepare_dataset(records: list[SharedQA], personas: dict[str, Any], out: Path, *, with_context: bool = False,
                    eval_share: float = 0.1, redact: bool = True, min_pairs: int = MIN_PAIRS,
                    filters: dict[str, Any] | None = None) -> Snapshot:
    """Write the snapshot of the approved ``records`` into ``out``: train.jsonl, eval.jsonl,
    preference.jsonl, snapshot.json (ids), the trainers' files and the dataset card (README.md).

    Raises FinetuneError when there are fewer than ``min_pairs`` approved pairs.
    """
    from kbchat.finetune import recipes

    approved = [r for r in records if r.status == "approved"]
    if len(approved) < min_pairs:
        where = ", ".join(f"{k} {v}" for k, v in (filters or {}).items() if v)
        raise FinetuneError(
            f"only {len(approved)} approved pair(s){f' ({where})' if where else ''}: at least {min_pairs} are "
            "needed to fine-tune; approve shared answers (`kbchat shared approve`) or import a QA sheet "
            "(`kbchat shared import`)")
    if not 0 <= eval_share < 1:
        raise FinetuneError(f"--eval-share must be at least 0 and below 1 (got {eval_share})")
    if redact:
        approved = [redact_record(r) for r in approved]
    rows = [to_row(r, personas, with_context) for r in approved]
    train_i, eval_i = split_indices([r.record.question for r in rows], eval_share)
    train, evals = [rows[i] for i in train_i], [rows[i] for i in eval_i]
    pref_rows = [(row, pair) for row in rows if (pair := preference_pair(row)) is not None]

    out.mkdir(parents=True, exist_ok=True)
    _jsonl(out / "train.jsonl", ({"messages": r.messages} for r in train))
    _jsonl(out / "eval.jsonl", ({"messages": r.messages} for r in evals))
    _jsonl(out / "preference.jsonl", (pair for _, pair in pref_rows))
    _jsonl(out / "preference_sharegpt.jsonl", (recipes.sharegpt_ranking(pair) for _, pair in pref_rows))
    digest = hashlib.sha256()
    for name in FILES:
        digest.update((out / name).read_bytes())
    options = {"with_context": with_context, "eval_share": eval_share, "redact": redact, **(filters or {})}
    snap = Snapshot(id=digest.hexdigest()[:12], folder=out, train=train, eval=evals,
                    preference=[p for _, p in pref_rows], preference_ids=[r.record.id for r, _ in pref_rows],
                    options=options)
    (out / "snapshot.json").write_text(json.dumps({
        "id": snap.id, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "options": options,
        "train": [r.record.id for r in train], "eval": [r.record.id for r in evals],
        "preference": snap.preference_ids}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    recipes.write_trainer_files(out)
    (out / "README.md").write_text(dataset_card(snap), encoding="utf-8")
    return snap


def _counts(title: str, counts: Counter) -> list[str]:
    lines = [f"### {title}", "", "| | pairs |", "|---|---:|"]
    lines += [f"| {k} | {n} |" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return lines + [""]


def dataset_card(snap: Snapshot) -> str:
    """The dataset card: counts by persona, language, origin and reviewer; token lengths; redaction; and the
    consent and review provenance of every row (record ids)."""
    rows = snap.train + snap.eval
    lengths = sorted(r.tokens for r in rows)
    o = snap.options
    lines = [f"# kbchat fine-tuning dataset {snap.id}", "",
             f"{len(rows)} approved pairs: {len(snap.train)} train, {len(snap.eval)} eval "
             f"(near-duplicate questions kept on one side); {len(snap.preference)} preference pair(s) from "
             "review edits (the edited answer chosen, the original rejected).", "",
             f"- Form: {'RAG (numbered passages + question -> answer citing [n])' if o.get('with_context') else 'question -> answer'}",
             f"- Redaction: {'e-mails, phone numbers and ID numbers masked as [EMAIL], [PHONE], [ID]' if o.get('redact') else 'none (--no-redact)'}",
             f"- Filters: persona {o.get('persona') or 'all'}, since {o.get('since') or 'the beginning'}", "",
             "## Counts", ""]
    lines += _counts("By persona", Counter(r.persona for r in rows))
    lines += _counts("By language (script)", Counter(r.language for r in rows))
    lines += _counts("By origin", Counter(r.record.origin for r in rows))
    lines += _counts("By reviewer", Counter(r.record.reviewed_by or "(none)" for r in rows))
    if lengths:
        p90 = lengths[min(len(lengths) - 1, int(0.9 * len(lengths)))]
        lines += ["## Token lengths (estimated, whole conversation)", "",
                  f"min {lengths[0]} · median {median(lengths):.0f} · p90 {p90} · max {lengths[-1]}", ""]
    lines += ["## Provenance", "",
              "Every row is a record of the kbchat database (`kbchat shared show ID`): shared with consent from "
              "a chat (origin share) or imported from a QA sheet (origin import), then approved by a reviewer.",
              "", "| split | record id | origin | source | shared | reviewed by | reviewed at | edited |",
              "|---|---|---|---|---|---|---|---|"]
    for split, part in (("train", snap.train), ("eval", snap.eval)):
        for r in part:
            q = r.record
            lines.append(f"| {split} | {q.id} | {q.origin} | {q.source or '-'} | {q.shared_at[:19]} | "
                         f"{q.reviewed_by or '-'} | {(q.reviewed_at or '-')[:19]} | "
                         f"{'yes' if q.edited_answer is not None else 'no'} |")
    return "\n".join(lines) + "\n"


__all__ = ["FILES", "MIN_PAIRS", "Row", "Snapshot", "char_ngrams", "dataset_card", "near_duplicate_groups",
           "normalise", "prepare_dataset", "preference_pair", "similarity", "split_indices", "to_row"]
