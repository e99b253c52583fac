"""`kbchat finetune` end to end on CPU, with no download: a QA sheet of 48 pairs in English and Chinese
imported through `kbchat shared import`, plus shared answers reviewed (approved, one edited) through the
ShareStore; `prepare` writes the snapshot (split keeping near-duplicates together, preference pairs from
the edit, the trainers' files checked against LLaMA-Factory's and Axolotl's documented schemas); a tiny
Llama built from a config with a byte-level tokenizer made here is trained (SFT and DPO), evaluated and
served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from kbchat.sharing.store import SharedQA, ShareStore

TOPICS_EN = ["GERD", "a colonoscopy", "H. pylori", "an ulcer", "IBS", "a gastroscopy", "hepatitis B",
             "gallstones", "constipation", "reflux at night", "fatty liver", "a polyp", "diarrhoea",
             "heartburn", "a liver test", "bloating", "an endoscopy", "lactose intolerance", "gastritis",
             "Crohn's disease", "celiac disease", "a hernia", "nausea", "an ultrasound"]
TOPICS_ZH = ["胃食道逆流", "大腸鏡", "幽門桿菌", "胃潰瘍", "腸躁症", "胃鏡", "B型肝炎", "膽結石", "便秘",
             "脂肪肝", "息肉", "腹瀉", "火燒心", "肝功能", "脹氣", "內視鏡", "乳糖不耐", "胃炎", "克隆氏症",
             "疝氣", "噁心", "超音波", "痔瘡", "黃疸"]


def sheet_rows() -> list[tuple[str, str]]:
    rows = [(f"What should I know about {t}?", f"For {t}, follow the leaflet and ask the clinic [1].")
            for t in TOPICS_EN]
    rows += [(f"{t}要注意什麼？", f"關於{t}，請依照衛教單並詢問門診 [1]。") for t in TOPICS_ZH]
    return rows


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def reviewed_shares(data: Path) -> list[SharedQA]:
    """Three shared answers with their passages: approved, approved with an edit, left pending."""
    from kbchat.records.database import Database

    store = ShareStore(Database(f"sqlite:///{data / 'kbchat.sqlite'}"))
    made = []
    for i, (q, a) in enumerate([("What is the fasting rule before a gastroscopy?", "Fast for 8 hours [1]."),
                                ("How long does a colonoscopy take?", "About 30 minutes [1]."),
                                ("Who reads the biopsy?", "A pathologist [1].")]):
        made.append(store.share(SharedQA(
            question=q, answer=a, persona_id="doctor", user="alice", answer_key=f"msg-{i}",
            sources=[{"n": 1, "file": "prep.pdf", "page": i + 2, "text": f"Passage {i}: {a}"}])))
    store.review(made[0].id, "approved", "admin")
    store.edit(made[1].id, "Usually 20 to 40 minutes, call [1] alice@example.org.", "admin")
    store.review(made[1].id, "approved", "admin")
    return made


def test_prepare_from_an_imported_sheet_and_reviewed_shares(cli_env, tmp_path):
    import csv

    sheet = tmp_path / "clinic-faq.csv"
    with sheet.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["question", "answer"])
        w.writerows(sheet_rows())
        # near-duplicates of the first question: they must land on one side of the split
        w.writerow(["What should I know about GERD ?", "See the GERD leaflet [1]."])
        w.writerow(["what should i know about gerd", "Ask the GERD nurse [1]."])
    res = run("shared", "import", sheet, "--persona", "doctor")
    assert res.exit_code == 0 and res.output.strip() == "clinic-faq.csv: 50 imported, 0 duplicates skipped", res.output
    shares = reviewed_shares(cli_env)

    out = tmp_path / "snap"
    res = run("finetune", "prepare", "-o", out, "--with-context", "--eval-share", "0.2")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[0].startswith(f"{out}: 42 train, 10 eval, 1 preference pair(s); snapshot ")
    train = [json.loads(x) for x in (out / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    evals = [json.loads(x) for x in (out / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(train) + len(evals) == 52  # 50 imported + 2 approved shares; the pending one left out
    from kbchat.personas import load_personas
    doctor = load_personas(Path(__file__).resolve().parents[2] / "personas")["doctor"]
    for ex in train + evals:
        roles = [m["role"] for m in ex["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert ex["messages"][0]["content"] == doctor.system_prompt()
    users = {ex["messages"][1]["content"]: ex for ex in train + evals}
    # RAG form for a share with passages, the plain question for a sheet row without
    rag = users["Passages:\n[1] prep.prpdf p.2: Passage 0: Fast for 8 hours [1].\n\nQuestion: What is the fasting "
                "rule before a gastroscopy?".replace("prep.prpdf", "prep.pdf")]
    assert rag["messages"][2]["content"] == "Fast for 8 hours [1]."
    assert "What should I know about IBS?" in users
    # near-duplicates on one side
    gerd = [q for q in users if "gerd" in q.lower()]
    sides = {("train" if users[q] in train else "eval") for q in gerd}
    assert len(gerd) == 3 and len(sides) == 1
    # the edit: chosen (redacted), the original rejected
    pref = [json.loads(x) for x in (out / "preference.jsonl").read_text(encoding="utf-8").splitlines()]
    assert pref == [{"prompt": users[next(q for q in users if "colonoscopy take" in q)]["messages"][:2],
                     "chosen": [{"role": "assistant", "content": "Usually 20 to 40 minutes, call [1] [EMAIL]."}],
                     "rejected": [{"role": "assistant", "content": "About 30 minutes [1]."}]}]
    # the card: counts and provenance of every row
    card = (out / "README.md").read_text(encoding="utf-8")
    snap = json.loads((out / "snapshot.json").read_text(encoding="utf-8"))
    assert card.startswith(f"# kbchat fine-tuning dataset {snap['id']}")
    for needle in ("| doctor | 52 |", "| import | 50 |", "| share | 2 |", "| admin | 2 |", "| latin |",
                   "| zh-Hant |", "Redaction: e-mails", shares[0].id, shares[1].id, "Token lengths"):
        assert needle in card, needle
    assert shares[2].id not in card
    assert len(snap["train"]) + len(snap["eval"]) == 52 and snap["preference"] == [shares[1].id]
    for rid in snap["train"] + snap["eval"]:
        assert f"| {rid} |" in card


def test_prepare_refuses_a_tiny_dataset(cli_env, tmp_path):
    reviewed_shares(cli_env)
    res = run("finetune", "prepare", "-o", tmp_path / "snap")
    assert res.exit_code == 1
    assert res.output.strip() == ("Error: only 2 approved pair(s): at least 20 are needed to fine-tune; approve "
                                  "shared answers (`kbchat shared approve`) or import a QA sheet "
                                  "(`kbchat shared import`)")
    assert not (tmp_path / "snap").exists()
    res = run("finetune", "prepare", "-o", tmp_path / "snap", "--persona", "nobody")
    assert res.exit_code == 1 and "unknown persona 'nobody'" in res.output


def test_split_keeps_near_duplicates_together():
    from kbchat.finetune.dataset import near_duplicate_groups, similarity, split_indices

    qs = ["What is GERD?", "what is gerd ??", "What is GERD", "胃食道逆流要注意什麼？", "胃食道逆流要注意什麼",
          "How long is a colonoscopy?", "Who reads the biopsy?", "Where is the clinic?"]
    groups = sorted(sorted(g) for g in near_duplicate_groups(qs))
    assert [0, 1, 2] in groups and [3, 4] in groups and len(groups) == 5
    assert similarity("What is GERD?", "Who reads the biopsy?") < 0.3
    train, evals = split_indices(qs, 0.4)
    assert sorted(train + evals) == list(range(len(qs))) and train and evals
    for g in groups:
        assert set(g) <= set(train) or set(g) <= set(evals)
    assert split_indices(qs, 0.4) == (train, evals)  # deterministic


# LLaMA-Factory's dataset_info.json entry, from its data/README.md ("dataset_name": {file_name, formatting
# (alpaca|sharegpt), ranking, columns{...}, tags{...}}) -- read through the search tool, hiyouga/LLaMA-Factory.
LF_ENTRY = {"hf_hub_url": str, "ms_hub_url": str, "script_url": str, "file_name": str, "file_sha1": str,
            "subset": str, "split": str, "folder": str, "num_samples": int, "ranking": bool, "formatting": str,
            "columns": dict, "tags": dict}
LF_COLUMNS = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
              "audios", "chosen", "rejected", "kto_tag"}
LF_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag",
           "system_tag"}
# Axolotl's config reference (docs.axolotl.ai/docs/config-reference.html and dataset-formats/conversation.html:
# chat_template datasets with field_messages / message_property_mappings / roles_to_train), written from those
# docs as read through the search tool plus knowledge of the current reference.
AX_TOP = {"base_model": str, "chat_template": str, "datasets": list, "test_datasets": list,
          "dataset_prepared_path": str, "output_dir": str, "adapter": str, "lora_r": int, "lora_alpha": int,
          "lora_dropout": float, "lora_target_linear": bool, "sequence_len": int, "sample_packing": bool,
          "micro_batch_size": int, "gradient_accumulation_steps": int, "num_epochs": int, "learning_rate": float,
          "optimizer": str, "lr_scheduler": str, "warmup_ratio": float, "bf16": (str, bool),
          "gradient_checkpointing": bool, "logging_steps": int, "saves_per_epoch": int, "val_set_size": float}
AX_DATASET = {"path": str, "ds_type": str, "type": str, "split": str, "data_files": (str, list),
              "field_messages": str, "message_property_mappings": dict, "roles_to_train": list,
              "train_on_eos": str, "chat_template": str, "roles": dict}


def _check(obj: dict, schema: dict, where: str) -> None:
    for key, value in obj.items():
        assert key in schema, f"{where}: unknown field {key!r}"
        assert isinstance(value, schema[key]), f"{where}.{key}: {type(value).__name__}"


def test_trainer_files_follow_the_documented_schemas(cli_env, tmp_path):
    import yaml

    from kbchat.finetune.dataset import prepare_dataset
    from kbchat.personas import load_personas

    personas = load_personas(Path(__file__).resolve().parents[2] / "personas")
    records = [SharedQA(question=q, answer=a, answer_key=f"k{i}", status="approved", persona_id="doctor",
                        edited_answer=(a + " (edited)") if i == 0 else None)
               for i, (q, a) in enumerate(sheet_rows())]
    out = tmp_path / "snap"
    prepare_dataset(records, personas, out)
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == {"kbchat_train", "kbchat_eval", "kbchat_preference"}
    for name, entry in info.items():
        _check(entry, LF_ENTRY, name)
        assert entry["formatting"] in ("alpaca", "sharegpt") and (out / entry["file_name"]).is_file()
        assert set(entry["columns"]) <= LF_COLUMNS and set(entry.get("tags", {})) <= LF_TAGS
        # the columns and tags name what the file holds
        first = json.loads((out / entry["file_name"]).read_text(encoding="utf-8").splitlines()[0])
        assert set(entry["columns"].values()) <= set(first), name
        if "tags" in entry:
            msg = first[entry["columns"]["messages"]][0]
            assert {entry["tags"]["role_tag"], entry["tags"]["content_tag"]} == set(msg)
    pref = json.loads((out / "preference_sharegpt.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert pref["chosen"]["from"] == "gpt" and pref["conversations"][0]["from"] == "human"

    ax = yaml.safe_load((out / "axolotl.yaml").read_text(encoding="utf-8"))
    _check(ax, AX_TOP, "axolotl.yaml")
    assert ax["adapter"] == "lora" and ax["chat_template"] == "tokenizer_default"
    for ds in ax["datasets"] + ax["test_datasets"]:
        _check(ds, AX_DATASET, "axolotl.yaml datasets")
        assert ds["type"] == "chat_template" and ds["ds_type"] == "json" and Path(ds["path"]).is_file()
        line = json.loads(Path(ds["path"]).read_text(encoding="utf-8").splitlines()[0])
        assert set(ds["message_property_mappings"].values()) == set(line[ds["field_messages"]][0])


# ------------------------------------------------------------------ a tiny causal LM, trained for real

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_base(folder: Path, texts: list[str], *, template: bool = True) -> Path:
    """A Llama of ~30k parameters built from a config (random weights) with a byte-level BPE tokenizer trained
    here on ``texts``; nothing is downloaded."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|im_end|>")
    if template:
        fast.chat_template = CHATML
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(
        vocab_size=len(fast), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512, pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id, tie_word_embeddings=True)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> Path:
    """A RAG-form snapshot of the sheet pairs (each with one passage) and two review edits."""
    from kbchat.finetune.dataset import prepare_dataset
    from kbchat.personas import load_personas

    personas = load_personas(Path(__file__).resolve().parents[2] / "personas")
    # a short system prompt keeps the sequences of the tiny tokenizer short
    records = [SharedQA(question=q, answer=a, answer_key=f"k{i}", status="approved", persona_prompt="You are Dr. Wang.",
                        sources=[{"n": 1, "file": "leaflet.pdf", "page": 1 + i % 3, "text": a}],
                        edited_answer=f"{a} Edited [1]." if i < 2 else None)
               for i, (q, a) in enumerate(sheet_rows())]
    out = tmp_path_factory.mktemp("snap")
    prepare_dataset(records, personas, out, with_context=True, eval_share=0.1)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory, snapshot) -> Path:
    texts = [line for name in ("train.jsonl", "eval.jsonl") for line in (snapshot / name).read_text("utf-8").splitlines()]
    return tiny_base(tmp_path_factory.mktemp("base"), texts)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, snapshot, base) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    res = run("finetune", "train", "--base", base, "--data", snapshot, "--out", out, "--max-steps", 8,
              "--lr", "1e-2", "--lora-r", 8, "--max-length", 256, "--save-steps", 4)
    assert res.exit_code == 0, res.output
    return out, res.output


def test_train_sft_loss_falls_and_the_adapter_is_saved(trained, snapshot):
    out, output = trained
    lines = output.splitlines()
    assert lines[0].startswith("training SFT LoRA r=8 on ") and "CPU (" in lines[0]
    assert lines[1].startswith("step 1/8 · loss ") and " · ETA " in lines[1]
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 9))
    assert log[-1]["loss"] < log[0]["loss"]
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-8"]
    card = (out / "README.md").read_text()
    snap_id = json.loads((snapshot / "snapshot.json").read_text())["id"]
    for needle in (f"snapshot `{snap_id}`", "| lora_r | 8 |", "| learning_rate | 0.01 |", "| max_length | 256 |",
                   "Hardware: CPU (", "Duration: ", " steps; loss "):
        assert needle in card, needle


def test_adapter_reloads_and_changes_the_model(trained, base):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out, _ = trained
    plain = AutoModelForCausalLM.from_pretrained(base)
    ids = torch.tensor([[5, 6, 7, 8]])
    before = plain(ids).logits
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), out / "adapter")
    after = tuned(ids).logits
    assert not torch.allclose(before, after)
    merged = tuned.merge_and_unload()
    assert torch.allclose(merged(ids).logits, after, atol=1e-5)


def test_resume_goes_on_from_the_last_checkpoint(trained, snapshot, base):
    import shutil

    out, _ = trained
    again = out.parent / "resumed"
    shutil.copytree(out, again)
    res = run("finetune", "train", "--base", base, "--data", snapshot, "--out", again, "--max-steps", 10,
              "--lr", "1e-2", "--lora-r", 8, "--max-length", 256, "--save-steps", 4, "--resume")
    assert res.exit_code == 0, res.output
    assert "resuming from checkpoint-8" in res.output.splitlines()[0]
    steps = [json.loads(x)["step"] for x in (again / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 11))


def test_dpo_runs_on_the_preference_pairs(snapshot, base, tmp_path):
    res = run("finetune", "train", "--base", base, "--data", snapshot, "--out", tmp_path, "--method", "dpo",
              "--max-steps", 2, "--lr", "1e-2", "--lora-r", 4, "--max-length", 256, "--batch-size", 2)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("training DPO LoRA r=4") and "with 2 example(s)" in res.output
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert len((tmp_path / "train_log.jsonl").read_text().splitlines()) == 2
    res = run("finetune", "train", "--base", base, "--data", snapshot, "--out", tmp_path / "short", "--method",
              "dpo", "--max-steps", 1, "--max-length", 16)
    assert res.exit_code == 1 and res.output.strip().splitlines()[-1] == (
        "Error: no example fits in --max-length 16 tokens (the answers were cut off entirely): raise --max-length")


def test_train_errors_are_one_line(snapshot, base, tmp_path):
    import shutil

    from kbchat.finetune.train import TrainOptions, oom_error

    bert = tmp_path / "bert"
    bert.mkdir()
    (bert / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    res = run("finetune", "train", "--base", bert, "--data", snapshot, "--out", tmp_path / "o1", "--max-steps", 1)
    assert res.exit_code == 1 and res.output.strip() == (
        f"Error: {bert}: not a causal language model (model type 'bert'); fine-tuning needs a text-generation "
        "model such as Qwen2.5 or Llama")
    res = run("finetune", "train", "--base", tmp_path, "--data", snapshot, "--out", tmp_path / "o2", "--max-steps", 1)
    assert res.exit_code == 1 and "not a model folder (no config.json)" in res.output
    bare = tmp_path / "bare"
    shutil.copytree(base, bare)
    cfg = json.loads((bare / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(cfg))
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    res = run("finetune", "train", "--base", bare, "--data", snapshot, "--out", tmp_path / "o3", "--max-steps", 1)
    assert res.exit_code == 1 and res.output.strip() == (
        f"Error: {bare}: the tokenizer has no chat template; pass --chat-template FILE (a Jinja chat template, "
        "e.g. the instruct model's)")
    template = tmp_path / "chatml.jinja"
    template.write_text(CHATML)
    res = run("finetune", "train", "--base", bare, "--data", snapshot, "--out", tmp_path / "o3", "--max-steps", 1,
              "--chat-template", template, "--max-length", 128)
    assert res.exit_code == 0, res.output
    res = run("finetune", "train", "--base", base, "--data", tmp_path, "--out", tmp_path / "o4")
    assert res.exit_code == 1 and "not a dataset snapshot" in res.output
    res = run("finetune", "train", "--base", base, "--data", snapshot, "--out", tmp_path / "o5", "--resume")
    assert res.exit_code == 1 and "--resume: no checkpoint in" in res.output
    assert str(oom_error(TrainOptions(base="b", data=tmp_path, out=tmp_path, max_length=512, batch_size=8,
                                      lora_r=16))) == (
        "out of memory while training on b: lower --max-length (now 512), --batch-size (now 8) or --lora-r "
        "(now 16); the last checkpoint is kept (--resume)")


def test_trl_configs_name_only_fields_trl_knows(snapshot):
    """`trl sft|dpo --config FILE` reads SFTConfig/DPOConfig, ModelConfig, ScriptArguments and
    DatasetMixtureConfig fields (TRL's own dataclasses, so this is checked against the installed TRL)."""
    import dataclasses

    import yaml
    from trl import DatasetMixtureConfig, DPOConfig, ModelConfig, ScriptArguments, SFTConfig

    for name, cfg in (("trl_sft.yaml", SFTConfig), ("trl_dpo.yaml", DPOConfig)):
        known = {f.name for c in (cfg, ModelConfig, ScriptArguments, DatasetMixtureConfig) for f in dataclasses.fields(c)}
        data = yaml.safe_load((snapshot / name).read_text())
        assert set(data) <= known, set(data) - known
        assert all(Path(d["data_files"]).is_file() for d in data["datasets"])


def test_chrf_is_character_level():
    from kbchat.finetune.evaluation import chrf, cites, scores

    assert chrf(["the cat sat"], ["the cat sat"]) == pytest.approx(100)
    assert chrf(["xyz"], ["abc"]) == 0
    same_zh = chrf(["避免睡前進食"], ["避免睡前進食"])
    part_zh = chrf(["避免睡前進食"], ["避免睡前三小時進食"])
    assert same_zh == pytest.approx(100) and 29 < part_zh < 30  # 29.2 by hand: Chinese counts without word boundaries
    assert chrf(["the cat"], ["the cat sat"]) < chrf(["the cat sat"], ["the cat sat"])
    assert cites("yes [1]") and cites("see 【2】") and cites("[1, 2]") and not cites("no [a]")
    s = scores(["a [1]", "b"], ["a [1]", "b"], [True, False])
    assert s["cite_share"] == 1 and s["length_ratio"] == 1


def test_eval_writes_the_side_by_side_table(trained, snapshot, base):
    out, _ = trained
    res = CliRunner().invoke(main, ["finetune", "eval", "--base", str(base), "--adapter", str(out), "--data",
                                    str(snapshot), "--max-new-tokens", "8", "--limit", "3"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "| metric | base | adapter |" in res.stdout and "| chrF (0-100) |" in res.stdout
    result = json.loads((out / "eval.json").read_text(encoding="utf-8"))
    assert result["examples"] == 3 and len(result["answers"]) == 3
    for side in ("base_scores", "adapter_scores"):
        assert set(result[side]) == {"chrf", "cite_share", "length_ratio"}
        assert 0 <= result[side]["chrf"] <= 100 and result[side]["cite_share"] is not None
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "## Evaluation on 3 held-out pair(s)" in card and "| question | reference | base | adapter |" in card


def test_serve_prints_vllm_ollama_and_the_persona_block(trained, base):
    import shlex

    import yaml

    from kbchat.personas import PersonaLLM

    out, _ = trained
    res = run("finetune", "serve", out, "--name", "dr-wang")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    vllm = shlex.split(lines[lines.index("# vLLM (OpenAI-compatible server with the LoRA adapter):") + 1])
    assert vllm[:3] == ["vllm", "serve", str(base)] and "--enable-lora" in vllm
    assert vllm[vllm.index("--lora-modules") + 1] == f"dr-wang={(out / 'adapter').resolve()}"
    modelfile = (out / "serve" / "Modelfile").read_text().splitlines()
    assert modelfile == [f"FROM {base}", f"ADAPTER {(out / 'adapter').resolve()}"]
    assert "\n".join(modelfile) in res.output
    block = yaml.safe_load((out / "serve" / "persona-llm.yaml").read_text())
    assert PersonaLLM.model_validate(block["llm"]).model == "dr-wang"
    assert block == {"llm": {"model": "dr-wang", "base_url": "http://localhost:8000/v1"}}


def test_a_persona_with_an_llm_block_answers_with_its_model(stub, tmp_path, monkeypatch):
    import shutil

    from kbchat import answer as ans
    from kbchat.personas import load_personas
    from kbchat.settings import Settings

    folder = tmp_path / "personas"
    shutil.copytree(Path(__file__).resolve().parents[2] / "personas", folder)
    doctor = (folder / "doctor.yaml").read_text(encoding="utf-8")
    (folder / "doctor.yaml").write_text(doctor + f"llm:\n  model: dr-wang\n  base_url: {stub.base_url}\n"
                                        "  api_key_env: DR_WANG_KEY\n", encoding="utf-8")
    monkeypatch.setenv("DR_WANG_KEY", "sk-dr-wang")
    personas = load_personas(folder)
    settings = Settings(data_dir=tmp_path / "data", personas_dir=folder, llm_base_url="http://127.0.0.1:9/v1",
                        llm_model="global-model", llm_timeout=5)
    messages = ans.build_messages("What is GERD?", [], system_prompt="x")
    stub.requests.clear()
    "".join(c.text for c in ans.stream(ans.make_llm(settings, persona=personas["doctor"]), messages))
    assert stub.requests[-1]["model"] == "dr-wang"
    assert {k.lower(): v for k, v in stub.headers[-1].items()}["authorization"] == "Bearer sk-dr-wang"
    # another persona keeps the global model (here on the stub too, to see what it asks for)
    plain = settings.model_copy(update={"llm_base_url": stub.base_url})
    "".join(c.text for c in ans.stream(ans.make_llm(plain, persona=personas["general"]), messages))
    assert stub.requests[-1]["model"] == "global-model"
    assert personas["general"].llm is None
    bad = folder / "doctor.yaml"
    bad.write_text(doctor + "llm:\n  model: dr-wang\n  base_url: localhost:8000\n", encoding="utf-8")
    from kbchat.errors import ConfigError
    with pytest.raises(ConfigError, match="field 'llm.base_url'"):
        load_personas(folder)


def test_without_the_extra_it_says_which_to_install(snapshot, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "trl", None)  # import trl now raises ImportError
    res = run("finetune", "train", "--base", tmp_path, "--data", snapshot, "--out", tmp_path / "o")
    assert res.exit_code == 1
    assert res.output.strip() == "Error: fine-tuning needs the Python package 'trl': pip install 'kbchat[finetune]'"
