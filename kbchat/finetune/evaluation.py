"""Base model vs adapter on a snapshot's eval split: chrF against the reference answers (character n-grams,
so Chinese counts properly), the share of answers citing [n] where passages were given, answer length vs the
references, and a table of examples; the numbers are appended to the run's model card."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, Callable

from kbchat.errors import FinetuneError

CHRF_ORDER = 6   # character n-grams up to 6 and beta 2: chrF as defined by Popović (2015) and sacrebleu's default
CHRF_BETA = 2
_CITE = re.compile(r"\[\d+(?:\s*[,\-–]\s*\d+)*\]|【\d+】")


def _grams(text: str, n: int) -> Counter:
    t = "".join(text.split())  # sacrebleu's chrF ignores whitespace
    return Counter(t[i:i + n] for i in range(len(t) - n + 1))


def chrf(hypotheses: list[str], references: list[str], order: int = CHRF_ORDER, beta: float = CHRF_BETA) -> float:
    """Corpus chrF (0-100): n-gram matches and counts summed over the sentences per order, precision and
    recall averaged over the orders, then the F-beta score. sacrebleu is used when installed."""
    try:
        from sacrebleu.metrics import CHRF
    except ImportError:
        pass
    else:
        return float(CHRF(char_order=order, word_order=0, beta=beta).corpus_score(hypotheses, [references]).score)
    precisions, recalls = [], []
    for n in range(1, order + 1):
        match = hyp_total = ref_total = 0
        for h, r in zip(hypotheses, references):
            hg, rg = _grams(h, n), _grams(r, n)
            match += sum((hg & rg).values())
            hyp_total += sum(hg.values())
            ref_total += sum(rg.values())
        if hyp_total and ref_total:
            precisions.append(match / hyp_total)
            recalls.append(match / ref_total)
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    return 100 * (1 + beta ** 2) * p * r / (beta ** 2 * p + r)


def cites(text: str) -> bool:
    """Whether the answer cites a passage ([1], [1, 2], [1-3], 【1】)."""
    return bool(_CITE.search(text))


def scores(answers: list[str], references: list[str], with_passages: list[bool]) -> dict[str, Any]:
    """chrF, the share citing [n] among examples with passages (None without any), length vs references."""
    rag = [a for a, w in zip(answers, with_passages) if w]
    ref_chars = sum(len(r) for r in references) or 1
    return {"chrf": round(chrf(answers, references), 2),
            "cite_share": round(sum(map(cites, rag)) / len(rag), 3) if rag else None,
            "length_ratio": round(sum(len(a) for a in answers) / ref_chars, 3)}


def run_folder(adapter: Path) -> tuple[Path, Path]:
    """(run folder, adapter folder) for a `kbchat finetune train --out` folder or its adapter/ folder."""
    if (adapter / "adapter" / "adapter_config.json").is_file():
        return adapter, adapter / "adapter"
    if (adapter / "adapter_config.json").is_file():
        return adapter.parent, adapter
    raise FinetuneError(f"{adapter}: no LoRA adapter here (no adapter_config.json); give the --out folder of "
                        "`kbchat finetune train`")


def _generate(model, tokenizer, messages: list[dict], max_new_tokens: int) -> str:
    import torch

    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def _cell(text: str, width: int = 80) -> str:
    t = " ".join(text.split()).replace("|", "\\|")
    return t if len(t) <= width else t[:width - 1] + "…"


def evaluate_adapter(base: str, adapter: Path, data: Path, *, max_new_tokens: int = 128, limit: int | None = None,
                     examples: int = 5, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate the eval split's answers with the base and with the adapter; write eval.json and append the
    side-by-side table to the run's model card. Returns what eval.json holds."""
    from kbchat.finetune.train import CARD_FILE, load_base, require

    run, adapter_dir = run_folder(adapter)
    path = data / "eval.jsonl"
    if not path.is_file():
        raise FinetuneError(f"{data}: not a dataset snapshot (no eval.jsonl); make one with `kbchat finetune prepare`")
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]
    if not rows:
        raise FinetuneError(f"{path} is empty: prepare the snapshot with --eval-share above 0")
    require()
    import transformers
    from peft import PeftModel

    transformers.logging.set_verbosity_error()
    model, tokenizer = load_base(base)
    tuned = PeftModel.from_pretrained(model, str(adapter_dir))
    tuned.eval()
    refs = [r["messages"][-1]["content"] for r in rows]
    passages = [r["messages"][-2]["content"].startswith("Passages:") for r in rows]
    base_answers, tuned_answers = [], []
    for i, r in enumerate(rows, 1):
        prompt = r["messages"][:-1]
        with tuned.disable_adapter():
            base_answers.append(_generate(tuned, tokenizer, prompt, max_new_tokens))
        tuned_answers.append(_generate(tuned, tokenizer, prompt, max_new_tokens))
        echo(f"answered {i}/{len(rows)}")
    result = {"base": base, "adapter": str(adapter_dir), "data": str(data), "examples": len(rows),
              "max_new_tokens": max_new_tokens,
              "base_scores": scores(base_answers, refs, passages),
              "adapter_scores": scores(tuned_answers, refs, passages),
              "answers": [{"question": r["messages"][-2]["content"], "reference": ref, "base": b, "adapter": a}
                          for r, ref, b, a in zip(rows, refs, base_answers, tuned_answers)]}
    (run / "eval.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    table = report(result, examples)
    card = run / CARD_FILE
    with card.open("a", encoding="utf-8") as f:
        f.write("\n" + table)
    return result


def report(result: dict[str, Any], examples: int = 5) -> str:
    """The Markdown section: the numbers side by side and a table of examples."""
    b, a = result["base_scores"], result["adapter_scores"]

    def fmt(v: Any, pct: bool = False) -> str:
        return "n/a" if v is None else (f"{100 * v:.0f} %" if pct else f"{v}")

    lines = [f"## Evaluation on {result['examples']} held-out pair(s)", "",
             "| metric | base | adapter |", "|---|---:|---:|",
             f"| chrF (0-100) | {fmt(b['chrf'])} | {fmt(a['chrf'])} |",
             f"| answers citing [n] (with passages) | {fmt(b['cite_share'], True)} | {fmt(a['cite_share'], True)} |",
             f"| length vs reference | {fmt(b['length_ratio'])} | {fmt(a['length_ratio'])} |", "",
             "| question | reference | base | adapter |", "|---|---|---|---|"]
    for row in result["answers"][:examples]:
        q = row["question"].rsplit("Question: ", 1)[-1]
        lines.append(f"| {_cell(q, 60)} | {_cell(row['reference'])} | {_cell(row['base'])} | {_cell(row['adapter'])} |")
    return "\n".join(lines) + "\n"


__all__ = ["CHRF_BETA", "CHRF_ORDER", "chrf", "cites", "evaluate_adapter", "report", "run_folder", "scores"]
