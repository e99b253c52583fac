"""LoRA training with TRL (SFTTrainer / DPOTrainer) and PEFT on a dataset snapshot: the base model from a
local folder (or a hub name where a hub is reachable), checkpoints and --resume, a JSON-lines training log,
and the model card (base, data snapshot, hyper-parameters, hardware, duration). Several GPUs: run the same
command under `accelerate launch` (accelerate's own distributed engine)."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from kbchat.errors import FinetuneError

INSTALL_HINT = "pip install 'kbchat[finetune]'"
ADAPTER_DIR = "adapter"
LOG_FILE = "train_log.jsonl"
RUN_FILE = "run.json"
CARD_FILE = "README.md"


def require(*names: str) -> None:
    """Import the optional training packages now, or say in one line which extra installs them."""
    import importlib

    for name in names or ("torch", "transformers", "datasets", "peft", "trl"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise FinetuneError(f"fine-tuning needs the Python package '{name}': {INSTALL_HINT}") from None


@dataclass
class TrainOptions:
    """The knobs of one run (the `kbchat finetune train` options)."""

    base: str
    data: Path
    out: Path
    method: str = "sft"
    epochs: float = 3.0
    max_steps: int | None = None
    lora_r: int = 16
    lora_alpha: int | None = None      # default 2 x r
    lora_dropout: float = 0.05
    lr: float | None = None            # default 2e-4 (SFT), 5e-5 (DPO)
    max_length: int = 1024
    batch_size: int = 4
    grad_accum: int = 1
    save_steps: int = 50
    resume: bool = False
    chat_template: Path | None = None
    seed: int = 0

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (5e-5 if self.method == "dpo" else 2e-4)


def hardware() -> tuple[str, bool, bool]:
    """(description, use a GPU, bf16 supported)."""
    import torch

    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        return f"{n} x {torch.cuda.get_device_name(0)}", True, torch.cuda.is_bf16_supported()
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})", False, False


def load_base(base: str, chat_template: Path | None = None, *, dtype: Any = None):
    """(model, tokenizer) of a causal LM; FinetuneError for a folder that is not one or a tokenizer without a
    chat template (unless ``chat_template`` names a Jinja file)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = Path(base)
    if path.exists() and not (path / "config.json").is_file():
        raise FinetuneError(f"{base}: not a model folder (no config.json); give the folder of a causal "
                            "language model (e.g. a downloaded Qwen2.5-0.5B-Instruct)")
    try:
        config = AutoConfig.from_pretrained(base)
    except Exception as err:
        raise FinetuneError(f"{base}: cannot read the model config ({' '.join(str(err).split())[:200]})") from None
    causal = {a for v in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values() for a in ((v,) if isinstance(v, str) else v)}
    archs = getattr(config, "architectures", None) or []
    # the architectures the folder was saved with decide (BERT has a causal head class but is not saved as one)
    if (archs and not set(archs) & causal) or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise FinetuneError(f"{base}: not a causal language model (model type '{config.model_type}'); "
                            "fine-tuning needs a text-generation model such as Qwen2.5 or Llama")
    tokenizer = AutoTokenizer.from_pretrained(base)
    if chat_template is not None:
        tokenizer.chat_template = Path(chat_template).read_text(encoding="utf-8")
    if not tokenizer.chat_template:
        raise FinetuneError(f"{base}: the tokenizer has no chat template; pass --chat-template FILE (a Jinja chat "
                            "template, e.g. the instruct model's)")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base, **({"dtype": dtype} if dtype is not None else {}))
    return model, tokenizer


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the accelerator (or the host) running out of memory."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, (oom, MemoryError)) or "out of memory" in str(err).lower()


def oom_error(opts: TrainOptions) -> FinetuneError:
    """The one line for an out-of-memory run: the three options that lower memory, with their values."""
    return FinetuneError(f"out of memory while training on {opts.base}: lower --max-length (now {opts.max_length}), "
                         f"--batch-size (now {opts.batch_size}) or --lora-r (now {opts.lora_r}); the last "
                         "checkpoint is kept (--resume)")


def _log_callback(path: Path, echo: Callable[[str], None]):
    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        """Each logged step as one JSON line, and a progress line with loss and ETA."""

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.monotonic()
            self.first = state.global_step

        def on_log(self, args, state, control, logs=None, **kw):
            logs = logs or {}
            if "loss" not in logs:
                return
            elapsed = time.monotonic() - self.t0
            done = max(state.global_step - self.first, 1)
            eta = elapsed / done * max(state.max_steps - state.global_step, 0)
            row = {"step": state.global_step, "epoch": round(state.epoch or 0, 4), "loss": float(logs["loss"]),
                   "learning_rate": float(logs.get("learning_rate", 0)), "seconds": round(elapsed, 2)}
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            echo(f"step {state.global_step}/{state.max_steps} · loss {row['loss']:.4f} · ETA {eta:.0f} s")

    return LossLog()


def snapshot_of(data: Path, method: str) -> dict[str, Any]:
    """The snapshot's snapshot.json; FinetuneError when ``data`` is not a snapshot or lacks the method's data."""
    if not (data / "train.jsonl").is_file() or not (data / "snapshot.json").is_file():
        raise FinetuneError(f"{data}: not a dataset snapshot (no train.jsonl / snapshot.json); make one with "
                            "`kbchat finetune prepare -o DIR`")
    snap = json.loads((data / "snapshot.json").read_text(encoding="utf-8"))
    if method == "dpo" and not snap.get("preference"):
        raise FinetuneError(f"{data}/preference.jsonl has no pairs: DPO learns from review edits "
                            "(`kbchat shared edit`); use --method sft")
    return snap


def train(opts: TrainOptions, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one LoRA training; returns the run record also written to ``out/run.json``."""
    if opts.method not in ("sft", "dpo"):
        raise FinetuneError(f"unknown method {opts.method!r} (use sft or dpo)")
    snap = snapshot_of(opts.data, opts.method)
    require()
    import datasets
    import torch
    import transformers
    from peft import LoraConfig
    from transformers.trainer_utils import get_last_checkpoint

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    checkpoints = opts.out / "checkpoints"
    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if opts.resume and last is None:
        raise FinetuneError(f"--resume: no checkpoint in {checkpoints} to resume from")
    hw, gpu, bf16 = hardware()
    model, tokenizer = load_base(opts.base, opts.chat_template, dtype=torch.bfloat16 if bf16 else None)
    opts.out.mkdir(parents=True, exist_ok=True)
    log = opts.out / LOG_FILE
    if not opts.resume:
        log.unlink(missing_ok=True)
    lora = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha or 2 * opts.lora_r, lora_dropout=opts.lora_dropout,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    common = dict(output_dir=str(checkpoints), learning_rate=opts.learning_rate, num_train_epochs=opts.epochs,
                  max_steps=opts.max_steps or -1, per_device_train_batch_size=opts.batch_size,
                  gradient_accumulation_steps=opts.grad_accum, logging_steps=1, save_steps=opts.save_steps,
                  save_total_limit=2, report_to=[], max_length=opts.max_length, use_cpu=not gpu, bf16=bf16,
                  disable_tqdm=True, seed=opts.seed)
    if opts.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        data = datasets.load_dataset("json", data_files={"train": str(opts.data / "preference.jsonl")})["train"]
        trainer = DPOTrainer(model=model, args=DPOConfig(**common), train_dataset=data, processing_class=tokenizer,
                             peft_config=lora)
    else:
        from trl import SFTConfig, SFTTrainer

        data = datasets.load_dataset("json", data_files={"train": str(opts.data / "train.jsonl")})["train"]
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=data, processing_class=tokenizer,
                             peft_config=lora)
    if len(trainer.train_dataset) == 0:
        raise FinetuneError(f"no example fits in --max-length {opts.max_length} tokens (the answers were cut "
                            "off entirely): raise --max-length")
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints each log dict; ours prints one progress line
    trainer.add_callback(_log_callback(log, echo))
    echo(f"training {opts.method.upper()} LoRA r={opts.lora_r} on {opts.base} with {len(data)} example(s), {hw}"
         + (f", resuming from {Path(last).name}" if opts.resume else ""))
    t0 = time.monotonic()
    try:
        result = trainer.train(resume_from_checkpoint=last if opts.resume else None)
    except Exception as err:
        if out_of_memory(err):
            raise oom_error(opts) from None
        raise
    seconds = time.monotonic() - t0
    trainer.save_model(str(opts.out / ADAPTER_DIR))
    tokenizer.save_pretrained(str(opts.out / ADAPTER_DIR))
    losses = [json.loads(x)["loss"] for x in log.read_text(encoding="utf-8").splitlines() if x.strip()]
    run = {"base": str(Path(opts.base).resolve()) if Path(opts.base).exists() else opts.base,
           "data": str(opts.data.resolve()), "snapshot": snap["id"], "persona": snap.get("options", {}).get("persona"),
           "method": opts.method, "examples": len(data),
           "hyperparameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()
                               if k not in ("base", "data", "out", "resume")}
           | {"learning_rate": opts.learning_rate, "lora_alpha": opts.lora_alpha or 2 * opts.lora_r,
              "target_modules": "all-linear"},
           "hardware": hw, "precision": "bf16" if bf16 else "fp32", "seconds": round(seconds, 1),
           "steps": result.global_step, "first_loss": losses[0] if losses else None,
           "final_loss": losses[-1] if losses else None,
           "versions": {m.__name__: m.__version__ for m in (torch, transformers, datasets)}}
    (opts.out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
    (opts.out / CARD_FILE).write_text(model_card(run), encoding="utf-8")
    return run


def model_card(run: dict[str, Any]) -> str:
    """The adapter's model card: base, data snapshot, hyper-parameters, hardware, duration, loss."""
    hp = "\n".join(f"| {k} | {v} |" for k, v in run["hyperparameters"].items())
    return (f"# LoRA adapter ({run['method'].upper()}) for {run['base']}\n\n"
            f"- Base model: `{run['base']}`\n"
            f"- Data: kbchat snapshot `{run['snapshot']}` ({run['examples']} examples, `{run['data']}`; its "
            "README.md lists the record id of every pair)\n"
            f"- Hardware: {run['hardware']}, {run['precision']}\n"
            f"- Duration: {run['seconds']} s, {run['steps']} steps; loss {run['first_loss']:.4f} -> "
            f"{run['final_loss']:.4f} (per step in train_log.jsonl)\n"
            f"- Files: `adapter/` (PEFT LoRA), `train_log.jsonl`, `checkpoints/`\n\n"
            "## Hyper-parameters\n\n| name | value |\n|---|---|\n" + hp + "\n\n"
            "## Use it\n\n`kbchat finetune serve DIR --name NAME` prints the vLLM command, an Ollama Modelfile and "
            "the persona `llm:` block.\n")


__all__ = ["ADAPTER_DIR", "CARD_FILE", "INSTALL_HINT", "LOG_FILE", "RUN_FILE", "TrainOptions", "hardware",
           "load_base", "model_card", "oom_error", "out_of_memory", "require", "snapshot_of", "train"]
