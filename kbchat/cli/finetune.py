"""`kbchat finetune prepare|train|eval|serve`: from the approved Q&A to a LoRA adapter a persona answers
with (the command line of kbchat.finetune)."""

from __future__ import annotations

from pathlib import Path

import click

from kbchat.cli.context import data_dir_option as _data_dir_option
from kbchat.cli.context import fail as _fail
from kbchat.cli.context import settings_for
from kbchat.errors import KbchatError


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


@commands.group("finetune")
def finetune_group() -> None:
    """Fine-tune a model on the approved Q&A: prepare a dataset, train a LoRA adapter, evaluate, serve."""


@finetune_group.command("prepare")
@click.option("-o", "--output", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the dataset snapshot.")
@click.option("--persona", default=None, metavar="ID", help="Only records of this persona.")
@click.option("--since", default=None, metavar="DATE", help="Only records shared on or after DATE (UTC).")
@click.option("--with-context", is_flag=True,
              help="RAG form: the numbered passages + the question -> the answer citing [n].")
@click.option("--eval-share", default=0.1, show_default=True, type=float, help="Share of pairs held out.")
@click.option("--redact/--no-redact", default=True, show_default=True,
              help="Mask e-mails, phone numbers and ID numbers.")
@click.option("--min-pairs", default=None, type=int, help="Refuse fewer approved pairs than this (default 20).")
@_data_dir_option
def prepare_cmd(out, persona, since, with_context, eval_share, redact, min_pairs, data_dir):
    """Write a dataset snapshot of the approved pairs: train/eval/preference JSONL, the trainers' files
    (LLaMA-Factory, Axolotl, TRL) and a dataset card."""
    from kbchat.cli.context import published_personas
    from kbchat.cli.shared import load, parse_since
    from kbchat.finetune.dataset import MIN_PAIRS, prepare_dataset

    s = settings_for(data_dir)
    since_iso = parse_since(since)
    try:
        personas = published_personas(s)
        if persona and persona not in personas:
            raise KbchatError(f"unknown persona '{persona}' (known: {', '.join(personas)})")
        records = load(data_dir, persona, since_iso, status="approved")
        snap = prepare_dataset(records, personas, out, with_context=with_context, eval_share=eval_share,
                               redact=redact, min_pairs=MIN_PAIRS if min_pairs is None else min_pairs,
                               filters={"persona": persona, "since": since})
    except KbchatError as err:
        raise _fail(err) from None
    click.echo(snap.summary())
    click.echo(f"Trainers: {out}/dataset_info.json (LLaMA-Factory), {out}/axolotl.yaml, {out}/trl_sft.yaml, "
               f"{out}/trl_dpo.yaml; card: {out}/README.md")


@finetune_group.command("train")
@click.option("--base", required=True, metavar="PATH_OR_NAME", help="Base causal LM: a local folder (or a hub name).")
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A snapshot folder from `kbchat finetune prepare`.")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--method", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True,
              help="sft: train.jsonl; dpo: preference.jsonl (review edits).")
@click.option("--epochs", type=float, default=None, help="Epochs (default 3).")
@click.option("--max-steps", type=int, default=None, help="Stop after N optimiser steps (instead of --epochs).")
@click.option("--lora-r", type=int, default=16, show_default=True, help="LoRA rank.")
@click.option("--lr", type=float, default=None, help="Learning rate (default 2e-4 SFT, 5e-5 DPO).")
@click.option("--max-length", type=int, default=1024, show_default=True, help="Longest sequence in tokens.")
@click.option("--batch-size", type=int, default=4, show_default=True, help="Examples per device and step.")
@click.option("--save-steps", type=int, default=50, show_default=True, help="Checkpoint every N steps.")
@click.option("--resume", is_flag=True, help="Go on from the last checkpoint in OUT/checkpoints.")
@click.option("--chat-template", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A Jinja chat template for a tokenizer that has none.")
def train_cmd(base, data, out, method, epochs, max_steps, lora_r, lr, max_length, batch_size, save_steps, resume,
              chat_template):
    """Train a LoRA adapter with TRL + PEFT (CPU for small models, GPUs when present; several GPUs: run
    this command under `accelerate launch`). Writes OUT/adapter, OUT/train_log.jsonl and OUT/README.md."""
    from kbchat.finetune.train import TrainOptions, train

    if epochs is not None and max_steps is not None:
        raise click.UsageError("give --epochs or --max-steps, not both")
    opts = TrainOptions(base=base, data=data, out=out, method=method, epochs=epochs or 3.0, max_steps=max_steps,
                        lora_r=lora_r, lr=lr, max_length=max_length, batch_size=batch_size, save_steps=save_steps,
                        resume=resume, chat_template=chat_template)
    try:
        run = train(opts, echo=click.echo)
    except KbchatError as err:
        raise _fail(err) from None
    click.echo(f"adapter: {out}/adapter · loss {run['first_loss']:.4f} -> {run['final_loss']:.4f} in "
               f"{run['steps']} steps, {run['seconds']} s · log: {out}/train_log.jsonl · card: {out}/README.md")


@finetune_group.command("eval")
@click.option("--base", required=True, metavar="PATH_OR_NAME", help="The base model the adapter was trained on.")
@click.option("--adapter", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The --out folder of `kbchat finetune train` (or its adapter/ folder).")
@click.option("--data", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="The snapshot folder (its eval.jsonl is used).")
@click.option("--max-new-tokens", type=int, default=128, show_default=True, help="Longest generated answer.")
@click.option("--limit", type=int, default=None, help="Only the first N eval pairs.")
def eval_cmd(base, adapter, data, max_new_tokens, limit):
    """Answer the eval split with the base and with the adapter: chrF, share citing [n], length; the table
    goes into the run's README.md (model card) and eval.json."""
    from kbchat.finetune.evaluation import evaluate_adapter, report

    try:
        result = evaluate_adapter(base, adapter, data, max_new_tokens=max_new_tokens, limit=limit,
                                  echo=lambda line: click.echo(line, err=True))
    except KbchatError as err:
        raise _fail(err) from None
    click.echo(report(result, examples=3), nl=False)


@finetune_group.command("serve")
@click.argument("run", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--name", required=True, help="The model name clients ask for (the persona's llm.model).")
@click.option("--base-url", default="http://localhost:8000/v1", show_default=True,
              help="Where the server will answer (vLLM's default port; Ollama: http://localhost:11434/v1).")
def serve_cmd(run, name, base_url):
    """Print (and write to RUN/serve/) the vLLM command, an Ollama Modelfile and the persona `llm:` block."""
    from kbchat.finetune.serve import serve_files

    try:
        files = serve_files(run, name, base_url=base_url)
    except KbchatError as err:
        raise _fail(err) from None
    click.echo("# vLLM (OpenAI-compatible server with the LoRA adapter):")
    click.echo(files["vllm"])
    click.echo(f"\n# Ollama Modelfile (ollama create {name} -f {files['folder']}/Modelfile):")
    click.echo(files["modelfile"], nl=False)
    click.echo("\n# Persona block (the console's persona editor, Language model; or add it to the persona's YAML and "
               "`kbchat personas import` it): the persona's chats then use this model")
    click.echo(files["persona"], nl=False)
    click.echo(f"\n(written to {files['folder']}/)")
