"""LoRA fine-tuning throughput: a hand-written PEFT loop vs TRL's SFTTrainer, same model, same data.

    python bench/finetune.py                                   # tiny + 0.5b shapes, both modes, this machine
    python bench/finetune.py --quick                           # smoke run: tiny shape, under a minute
    python bench/finetune.py --shapes 0.5b,1.5b,7b --seq-len 512 --batch 8 --steps 20 --warmup 5 \\
        --json /tmp/gpu.json                                    # on a GPU (bf16 picked automatically)

What it measures. For each shape (Qwen2-style configs built with transformers' Qwen2Config and random
weights: nothing is downloaded, no tokenizer is loaded) and each mode:

- `plain`: a hand-written loop. `peft.get_peft_model` with LoRA r=16, alpha=32, dropout 0.05 on all linear
  layers (`target_modules="all-linear"`, which leaves lm_head out), gradient checkpointing (non-reentrant),
  torch AdamW (fused on CUDA), lr 1e-4, gradient clipping at 1.0 (Trainer's default, so both modes do the
  same work), the model's own loss (labels = input_ids).
- `trl`: `trl.SFTTrainer` with the same `LoraConfig` passed as `peft_config`, on a `datasets.Dataset` of the
  same random token ids (an `input_ids` column, so SFTTrainer skips tokenising), packing off,
  `max_length=--seq-len`, `max_steps`, the same batch size, optimiser, lr, clipping and checkpointing. A
  throw-away word-level tokenizer (3 special tokens) is passed as processing_class because SFTTrainer needs a
  pad token; it never tokenises anything.

Both modes get the same batch size, sequence length and dtype: bf16 weights + bf16 autocast on a GPU that
supports bf16, fp32 on a CPU (override with --dtype). Each (shape, mode) runs in its own child process, so
peak memory is that run's alone and one out-of-memory failure loses nothing else; --json is rewritten after
every run. On a shared or busy CPU, `--repeats N` runs each pair N times, alternating the mode order, and
reports the median (the 1-minute load average at each child's start and end is recorded).

Reported per run: tokens/s (batch x seq-len / step time; the median over the timed steps, and the mean =
timed tokens / timed wall time; and at the fastest timed step, the figure least disturbed by other load on
a shared machine), the step time, peak memory (torch.cuda.max_memory_allocated on a GPU,
ru_maxrss of the child process on a CPU: the whole process, weights and Python included), trainable
parameters, the trl/plain tokens/s ratio (issue 25's target: trl within 20 % of plain, i.e. ratio >= 0.80)
and the estimated wall time for 1,200 pairs x 3 epochs x 300 tokens (1,080,000 tokens at the measured rate:
it assumes 300-token pairs are packed or batched as efficiently as the --seq-len sequences here).
A step's time is from the end of the previous optimiser step to the end of this one (CUDA synchronised),
so for trl it includes everything the Trainer does between steps (data loading, collation, metrics);
the first --warmup steps are left out.

Needs: torch, transformers (Qwen2), peft, accelerate; trl and datasets for the trl mode (without them the
trl rows report the import error and the plain rows still run). Does not import kbchat.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

# Qwen2 / Qwen2.5 base shapes (config.json of the public checkpoints); "tiny" is for a smoke run.
SHAPES: dict[str, dict] = {
    "tiny": {
        "hidden_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 352,
        "vocab_size": 4096,
        "tie_word_embeddings": True,
    },
    "0.5b": {
        "hidden_size": 896,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "intermediate_size": 4864,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "1.5b": {
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "intermediate_size": 8960,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "7b": {
        "hidden_size": 3584,
        "num_hidden_layers": 28,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "intermediate_size": 18944,
        "vocab_size": 152064,
        "tie_word_embeddings": False,
    },
}
MODES = ("plain", "trl")
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": "all-linear",
    "task_type": "CAUSAL_LM",
}
LR = 1e-4
MAX_GRAD_NORM = 1.0
PAIRS, EPOCHS, TOKENS_PER_PAIR = 1200, 3, 300
JOB_TOKENS = PAIRS * EPOCHS * TOKENS_PER_PAIR  # 1,080,000
FIRST_TOKEN = 3  # ids 0-2 are the throw-away tokenizer's <pad>, <eos>, <unk>


# ---------------------------------------------------------------- helpers (child and parent)


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "trl", "datasets", "pyarrow"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as exc:  # noqa: BLE001 - a missing package is a result, not a crash
            out[name] = f"missing ({type(exc).__name__}: {exc})"[:160]
    return out


def machine() -> dict:
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["ram_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            p = torch.cuda.get_device_properties(0)
            info["gpu"] = p.name
            info["gpu_mem_gib"] = round(p.total_memory / 2**30, 1)
    except Exception as exc:  # noqa: BLE001 - the table still prints without these
        info["torch_error"] = f"{type(exc).__name__}: {exc}"[:160]
    return info


def pick_device_dtype(dtype_arg: str):
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype_arg == "auto":
        dtype = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    else:
        dtype = dtype_arg
    return device, dtype


def torch_dtype(name: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# ---------------------------------------------------------------- child: one (shape, mode) run


def build_model(shape: str, dtype_name: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    cfg = Qwen2Config(max_position_embeddings=32768, use_cache=False, **SHAPES[shape])
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch_dtype(dtype_name))
    model.to(device)
    model.config.use_cache = False
    return model, time.perf_counter() - t0


def random_ids(shape: str, rows: int, seq_len: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randint(FIRST_TOKEN, SHAPES[shape]["vocab_size"], (rows, seq_len), generator=g)


def sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def lora_config():
    from peft import LoraConfig

    return LoraConfig(**LORA)


def run_plain(shape: str, a, device: str, dtype_name: str) -> dict:
    import contextlib

    import torch
    from peft import get_peft_model

    model, build_s = build_model(shape, dtype_name, device)
    model = get_peft_model(model, lora_config())
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=(device == "cuda"))

    steps = a.warmup + a.steps
    data = random_ids(shape, steps * a.batch, a.seq_len)
    mask = torch.ones(a.batch, a.seq_len, dtype=torch.long, device=device)
    autocast = (
        torch.autocast(device_type=device, dtype=torch_dtype(dtype_name))
        if dtype_name != "fp32"
        else contextlib.nullcontext()
    )
    ends = []
    sync(device)
    start = time.perf_counter()
    losses = []
    for i in range(steps):
        batch = data[i * a.batch : (i + 1) * a.batch].to(device, non_blocking=True)
        with autocast:
            out = model(input_ids=batch, attention_mask=mask, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(out.loss.detach())
        sync(device)
        ends.append(time.perf_counter())
        if a.verbose:
            print(
                f"    plain step {i + 1}/{steps}: {ends[-1] - (ends[-2] if i else start):.2f} s", flush=True
            )
    return {
        "build_s": build_s,
        "step_ends": [start] + ends,
        "trainable_params": trainable,
        "total_params": total,
        "final_loss": float(losses[-1]),
    }


def throwaway_tokenizer():
    """A 3-token word-level tokenizer: SFTTrainer needs a processing_class with a pad token, nothing more."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({"<pad>": 0, "<eos>": 1, "<unk>": 2}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def run_trl(shape: str, a, device: str, dtype_name: str) -> dict:
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            sync(device)
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            sync(device)
            self.ends.append(time.perf_counter())
            if a.verbose:
                print(
                    f"    trl step {state.global_step}/{args.max_steps}: {self.ends[-1] - self.ends[-2]:.2f} s",
                    flush=True,
                )

    model, build_s = build_model(shape, dtype_name, device)
    steps = a.warmup + a.steps
    data = random_ids(shape, steps * a.batch, a.seq_len)
    ds = Dataset.from_dict({"input_ids": data.tolist()})
    out_dir = tempfile.mkdtemp(prefix="finetune-bench-trl-")
    cfg = SFTConfig(
        output_dir=out_dir,
        per_device_train_batch_size=a.batch,
        gradient_accumulation_steps=1,
        max_steps=steps,
        learning_rate=LR,
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        optim="adamw_torch_fused" if device == "cuda" else "adamw_torch",
        lr_scheduler_type="constant",
        warmup_steps=0,
        gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        bf16=(dtype_name == "bf16"),
        fp16=(dtype_name == "fp16"),
        use_cpu=(device == "cpu"),
        max_length=a.seq_len,
        packing=False,
        padding_free=False,
        dataloader_num_workers=0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    clock = StepClock()
    trainer = SFTTrainer(
        model=model,
        args=cfg,
        train_dataset=ds,
        processing_class=throwaway_tokenizer(),
        peft_config=lora_config(),
        callbacks=[clock],
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    result = trainer.train()
    return {
        "build_s": build_s,
        "step_ends": clock.ends,
        "trainable_params": trainable,
        "total_params": total,
        "final_loss": float(result.training_loss),
    }


def worker(shape: str, mode: str, a, out_path: str) -> int:
    res: dict = {
        "shape": shape,
        "mode": mode,
        "seq_len": a.seq_len,
        "batch": a.batch,
        "warmup": a.warmup,
        "steps": a.steps,
    }
    try:
        import torch

        device, dtype_name = pick_device_dtype(a.dtype)
        res.update(device=device, dtype=dtype_name)
        if a.threads:
            torch.set_num_threads(a.threads)
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        raw = (run_plain if mode == "plain" else run_trl)(shape, a, device, dtype_name)
        res["run_s"] = round(time.perf_counter() - t0, 2)
        ends = raw.pop("step_ends")
        durations = [b - e for e, b in itertools.pairwise(ends)]
        timed = durations[a.warmup :]
        tokens_per_step = a.batch * a.seq_len
        res.update(raw)
        res["step_s_all"] = [round(d, 4) for d in durations]
        if timed:
            med = statistics.median(timed)
            res["step_s_median"] = med
            res["tok_s_median"] = tokens_per_step / med
            res["tok_s_mean"] = tokens_per_step * len(timed) / sum(timed)
            res["tok_s_best"] = tokens_per_step / min(timed)
            res["job_s"] = JOB_TOKENS / res["tok_s_median"]
        else:
            res["error"] = f"no timed steps (got {len(durations)} step times, warm-up {a.warmup})"
        if device == "cuda":
            res["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
            res["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            res["peak_mem_kind"] = "cuda max_memory_allocated"
        else:
            res["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            res["peak_mem_kind"] = "ru_maxrss (process)"
    except Exception as exc:  # noqa: BLE001 - reported in the table
        traceback.print_exc()
        res["error"] = f"{type(exc).__name__}: {exc}"[:400]
    Path(out_path).write_text(json.dumps(res, indent=1))
    return 0


# ---------------------------------------------------------------- parent: runs, table, JSON


def run_child(shape: str, mode: str, a) -> dict:
    fd, out_path = tempfile.mkstemp(prefix=f"finetune-{shape}-{mode}-", suffix=".json")
    os.close(fd)
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        f"{shape}:{mode}",
        "--worker-out",
        out_path,
        "--seq-len",
        str(a.seq_len),
        "--batch",
        str(a.batch),
        "--steps",
        str(a.steps),
        "--warmup",
        str(a.warmup),
        "--dtype",
        a.dtype,
        "--threads",
        str(a.threads),
    ]
    if a.verbose:
        cmd.append("--verbose")
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, check=False, timeout=a.run_timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    wall = time.perf_counter() - t0
    try:
        res = json.loads(Path(out_path).read_text())
    except (OSError, ValueError):
        res = {"shape": shape, "mode": mode}
    finally:
        Path(out_path).unlink(missing_ok=True)
    if "tok_s_median" not in res and "error" not in res:
        res["error"] = f"child exited with {rc} and wrote no result (killed? out of memory?)"
    res["child_wall_s"] = round(wall, 1)
    res["load_avg"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]  # 1-min load at start and end
    return res


def summarise(results: list[dict]) -> list[dict]:
    """One row per (shape, mode): the median over repeats of each run's median tokens/s, the spread, max peak."""
    rows = []
    for key in dict.fromkeys((r["shape"], r["mode"]) for r in results):
        runs = [r for r in results if (r["shape"], r["mode"]) == key]
        ok = [r for r in runs if "tok_s_median" in r]
        if not ok:
            rows.append(runs[-1])
            continue
        row = dict(ok[0])
        for r in ok:
            row.pop("repeat", None)
        row.pop("step_s_all", None)
        row["runs"] = len(ok)
        row["tok_s_runs"] = [round(r["tok_s_median"], 1) for r in ok]
        row["tok_s_median"] = statistics.median(r["tok_s_median"] for r in ok)
        row["tok_s_mean"] = statistics.median(r["tok_s_mean"] for r in ok)
        row["tok_s_best"] = max(r["tok_s_best"] for r in ok)
        row["step_s_median"] = statistics.median(r["step_s_median"] for r in ok)
        row["peak_mem_gib"] = max(r["peak_mem_gib"] for r in ok)
        row["job_s"] = JOB_TOKENS / row["tok_s_median"]
        row["load_avg"] = [r["load_avg"] for r in ok]
        rows.append(row)
    return rows


def ratio_rows(results: list[dict]) -> list[dict]:
    rows = []
    for shape in dict.fromkeys(r["shape"] for r in results):
        by = {r["mode"]: r for r in results if r["shape"] == shape}
        p, t = by.get("plain", {}), by.get("trl", {})
        if "tok_s_median" in p and "tok_s_median" in t:
            ratio = t["tok_s_median"] / p["tok_s_median"]
            best = t["tok_s_best"] / p["tok_s_best"]
            rows.append({"shape": shape, "ratio": ratio, "ratio_best": best, "met": ratio >= 0.8})
    return rows


def table(results: list[dict]) -> str:
    lines = [
        (
            "| shape | mode | device / dtype | seq × batch | tokens/s (median) | tokens/s (mean) "
            "| tokens/s (best step) | step (median) "
            "| peak memory | trainable params | 1,200 pairs × 3 epochs × 300 tok |"
        ),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        if "tok_s_median" not in r:
            lines.append(
                f"| {r['shape']} | {r['mode']} | {r.get('device', '-')} / {r.get('dtype', '-')} "
                f"| {r.get('seq_len', '-')} × {r.get('batch', '-')} | failed: {r.get('error', '?')} "
                "| | | | | | |"
            )
            continue
        mem_unit = "GiB (GPU alloc)" if r.get("device") == "cuda" else "GiB RSS"
        spread = (
            " (runs: " + " / ".join(f"{x:,.0f}" for x in r["tok_s_runs"]) + ")"
            if r.get("runs", 1) > 1
            else ""
        )
        lines.append(
            f"| {r['shape']} | {r['mode']} | {r['device']} / {r['dtype']} | {r['seq_len']} × {r['batch']} "
            f"| {r['tok_s_median']:,.0f}{spread} | {r['tok_s_mean']:,.0f} | {r['tok_s_best']:,.0f} "
            f"| {r['step_s_median']:.3f} s "
            f"| {r['peak_mem_gib']:.1f} {mem_unit} | {r['trainable_params'] / 1e6:.1f} M "
            f"| {fmt_duration(r['job_s'])} |"
        )
    rr = ratio_rows(results)
    if rr:
        lines += [
            "",
            (
                "| shape | trl / plain tokens/s (medians) | same, best steps | issue 25 target (trl within 20 % of plain,"
                " on the medians) |"
            ),
            "|---|---:|---:|---|",
        ]
        for x in rr:
            lines.append(
                f"| {x['shape']} | {x['ratio']:.2f} | {x['ratio_best']:.2f} | {'MET' if x['met'] else 'NOT MET'} |"
            )
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--shapes", default="tiny,0.5b", help=f"comma list of {', '.join(SHAPES)} (default tiny,0.5b)"
    )
    ap.add_argument("--modes", default="plain,trl", help="comma list of plain, trl (default both)")
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--batch", type=int, default=None, help="default 8 on a GPU, 1 on a CPU")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 20 on a GPU, 3 on a CPU)")
    ap.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first (default 3 on a GPU, 1 on a CPU)"
    )
    ap.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "bf16", "fp16", "fp32"],
        help="auto: bf16 on a GPU that supports it, else fp32",
    )
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="run each (shape, mode) N times, alternating the mode order; report the median",
    )
    ap.add_argument("--run-timeout", type=float, default=3600, help="seconds per (shape, mode) child")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: --shapes tiny, 1 warm-up + 3 timed steps"
    )
    ap.add_argument("--json", help="write all results (rewritten after every run) to this path")
    ap.add_argument("--verbose", action="store_true", help="print every step's time")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = ap.parse_args()

    if a.worker:
        import warnings

        warnings.filterwarnings(
            "ignore", category=FutureWarning
        )  # transformers 5's renamed checkpointing args
        shape, mode = a.worker.split(":")
        return worker(shape, mode, a, a.worker_out)

    if a.quick:
        a.shapes, a.steps, a.warmup = "tiny", 3, 1
    shapes = [s.strip() for s in a.shapes.split(",") if s.strip()]
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
    for m in modes:
        if m not in MODES:
            ap.error(f"unknown mode {m!r}; choose from {', '.join(MODES)}")

    import torch

    gpu = torch.cuda.is_available()
    a.batch = a.batch or (8 if gpu else 1)
    a.steps = a.steps if a.steps is not None else (20 if gpu else 3)
    a.warmup = a.warmup if a.warmup is not None else (3 if gpu else 1)
    device, dtype_name = pick_device_dtype(a.dtype)

    meta = {
        "machine": machine(),
        "versions": versions(),
        "load_avg": os.getloadavg(),
        "args": {k: v for k, v in vars(a).items() if not k.startswith("worker")},
        "lora": LORA,
        "lr": LR,
        "max_grad_norm": MAX_GRAD_NORM,
        "job": {"pairs": PAIRS, "epochs": EPOCHS, "tokens_per_pair": TOKENS_PER_PAIR, "tokens": JOB_TOKENS},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(f"# finetune bench: {meta['machine']}", flush=True)
    print(f"# versions: {meta['versions']}", flush=True)
    print(
        f"# device {device}, dtype {dtype_name}, seq-len {a.seq_len}, batch {a.batch}, "
        f"{a.warmup} warm-up + {a.steps} timed steps, load average {meta['load_avg']}",
        flush=True,
    )
    if "missing" in meta["versions"]["trl"] or "missing" in meta["versions"]["datasets"]:
        print("# trl or datasets is missing: the trl rows will report the import error", flush=True)

    results: list[dict] = []
    for shape in shapes:
        for rep in range(a.repeats):
            # alternate the order so that a change in machine load hits both modes alike
            for mode in modes if rep % 2 == 0 else modes[::-1]:
                print(
                    f"\n## {shape} / {mode}" + (f" (repeat {rep + 1}/{a.repeats})" if a.repeats > 1 else ""),
                    flush=True,
                )
                r = run_child(shape, mode, a)
                r["repeat"] = rep + 1
                results.append(r)
                if "tok_s_median" in r:
                    print(
                        f"## {shape} / {mode}: {r['tok_s_median']:,.0f} tokens/s (median), "
                        f"{r['tok_s_mean']:,.0f} (mean), peak {r['peak_mem_gib']:.1f} GiB, "
                        f"steps {r['step_s_all']}, child {r['child_wall_s']} s, load {r['load_avg']}",
                        flush=True,
                    )
                else:
                    print(f"## {shape} / {mode}: FAILED: {r.get('error')}", flush=True)
                if a.json:
                    summary = summarise(results)
                    Path(a.json).write_text(
                        json.dumps(
                            {**meta, "summary": summary, "ratios": ratio_rows(summary), "runs": results},
                            indent=1,
                        )
                    )

    print("\n" + table(summarise(results)))
    print(
        f"\nEstimated wall time = {JOB_TOKENS:,} tokens ({PAIRS:,} pairs × {EPOCHS} epochs × {TOKENS_PER_PAIR} "
        "tokens) / median tokens/s; it assumes the pairs are packed or batched as efficiently as these "
        f"{a.seq_len}-token sequences."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
