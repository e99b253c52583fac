"""Ready-to-run files for the trainers organisations already use, written beside a dataset snapshot:
LLaMA-Factory's dataset_info.json, an Axolotl YAML and TRL configs (field names from those projects' docs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BASE_PLACEHOLDER = "PATH_OR_NAME_OF_BASE_MODEL"  # the snapshot does not know the base: set it before training

_ROLE = {"system": "system", "user": "human", "assistant": "gpt"}


def sharegpt_ranking(pair: dict[str, Any]) -> dict[str, Any]:
    """A TRL preference pair in LLaMA-Factory's ranking sharegpt form (chosen / rejected: one message each)."""
    system = [m["content"] for m in pair["prompt"] if m["role"] == "system"]
    turns = [{"from": _ROLE[m["role"]], "value": m["content"]} for m in pair["prompt"] if m["role"] != "system"]
    return {"conversations": turns, "system": system[0] if system else "",
            "chosen": {"from": "gpt", "value": pair["chosen"][0]["content"]},
            "rejected": {"from": "gpt", "value": pair["rejected"][0]["content"]}}


def llamafactory_dataset_info() -> dict[str, Any]:
    """LLaMA-Factory's dataset_info.json for the snapshot (put `dataset_dir` at the snapshot folder)."""
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system"}
    return {
        "kbchat_train": {"file_name": "train.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                         "tags": tags},
        "kbchat_eval": {"file_name": "eval.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
                        "tags": tags},
        "kbchat_preference": {"file_name": "preference_sharegpt.jsonl", "formatting": "sharegpt", "ranking": True,
                              "columns": {"messages": "conversations", "system": "system", "chosen": "chosen",
                                          "rejected": "rejected"}},
    }


def _yaml(value: Any, indent: int = 0) -> list[str]:
    """A small YAML writer for mappings/lists of scalars (scalars as JSON, which YAML reads)."""
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines += _yaml(v, indent + 2)
            else:
                lines.append(f"{pad}{k}: {json.dumps(v, ensure_ascii=False)}")
    else:
        for item in value:
            if not isinstance(item, (dict, list)):
                lines.append(f"{pad}- {json.dumps(item, ensure_ascii=False)}")
                continue
            sub = _yaml(item, indent + 2)
            lines.append(f"{pad}- {sub[0].lstrip()}")
            lines += sub[1:]
    return lines


def axolotl_config(folder: Path) -> dict[str, Any]:
    """An Axolotl LoRA config reading the snapshot's chat-format files (`axolotl train axolotl.yaml`)."""
    def ds(name: str) -> dict[str, Any]:
        return {"path": str(folder / name), "ds_type": "json", "type": "chat_template", "split": "train",
                "field_messages": "messages",
                "message_property_mappings": {"role": "role", "content": "content"},
                "roles_to_train": ["assistant"]}

    return {
        "base_model": BASE_PLACEHOLDER,
        "chat_template": "tokenizer_default",
        "datasets": [ds("train.jsonl")],
        "test_datasets": [ds("eval.jsonl")],
        "dataset_prepared_path": str(folder / "axolotl-prepared"),
        "output_dir": str(folder / "axolotl-out"),
        "adapter": "lora",
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "lora_target_linear": True,
        "sequence_len": 1024, "sample_packing": False,
        "micro_batch_size": 4, "gradient_accumulation_steps": 2, "num_epochs": 3,
        "learning_rate": 0.0002, "optimizer": "adamw_torch", "lr_scheduler": "cosine", "warmup_ratio": 0.03,
        "bf16": "auto", "gradient_checkpointing": True, "logging_steps": 1, "saves_per_epoch": 1,
    }


def trl_config(folder: Path, method: str = "sft") -> dict[str, Any]:
    """A config for TRL's own command line (`trl sft --config trl_sft.yaml`, `trl dpo --config ...`)."""
    common = {"model_name_or_path": BASE_PLACEHOLDER, "output_dir": str(folder / f"trl-{method}-out"),
              "use_peft": True, "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
              "lora_target_modules": ["all-linear"], "learning_rate": 0.0002, "num_train_epochs": 3,
              "per_device_train_batch_size": 4, "gradient_accumulation_steps": 2, "gradient_checkpointing": True,
              "max_length": 1024, "logging_steps": 1, "save_strategy": "epoch", "report_to": "none"}
    if method == "dpo":
        return {**common, "dataset_name": "json",
                "datasets": [{"path": "json", "data_files": str(folder / "preference.jsonl"), "split": "train"}],
                "learning_rate": 0.00005, "beta": 0.1}
    return {**common, "dataset_name": "json",
            "datasets": [{"path": "json", "data_files": str(folder / "train.jsonl"), "split": "train"}],
            "eval_strategy": "epoch", "assistant_only_loss": False}


def write_trainer_files(folder: Path) -> list[Path]:
    """dataset_info.json (LLaMA-Factory), axolotl.yaml, trl_sft.yaml and trl_dpo.yaml in ``folder``."""
    folder = folder.resolve()
    written = []
    info = folder / "dataset_info.json"
    info.write_text(json.dumps(llamafactory_dataset_info(), indent=2) + "\n", encoding="utf-8")
    written.append(info)
    for name, config, note in (
            ("axolotl.yaml", axolotl_config(folder), "axolotl train axolotl.yaml"),
            ("trl_sft.yaml", trl_config(folder, "sft"), "trl sft --config trl_sft.yaml"),
            ("trl_dpo.yaml", trl_config(folder, "dpo"), "trl dpo --config trl_dpo.yaml")):
        path = folder / name
        path.write_text(f"# written by `kbchat finetune prepare`; set the base model, then: {note}\n"
                        + "\n".join(_yaml(config)) + "\n", encoding="utf-8")
        written.append(path)
    return written


__all__ = ["BASE_PLACEHOLDER", "axolotl_config", "llamafactory_dataset_info", "sharegpt_ranking", "trl_config",
           "write_trainer_files"]
