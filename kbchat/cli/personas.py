"""The ``kbchat personas`` commands: list, import (YAML files or folders, and prompt libraries as CSV
drafts), export (YAML files), versions, restore, publish, remove. The personas live in the database
(kbchat.records.personas); every change is an audit line (persona.*) by "cli:<login>"."""

from __future__ import annotations

from pathlib import Path

import click

from kbchat.cli.context import cli_user, data_dir_option, fail, persona_records, settings_for
from kbchat.errors import KbchatError

EXPORT_DIR = Path("personas-export")


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


@commands.group("personas")
def personas_group() -> None:
    """Personas in the database: the personas/ folder seeds it on the first start; import and export YAML."""


def _records(data_dir):
    try:
        return persona_records(settings_for(data_dir))
    except KbchatError as err:
        raise fail(err) from None


@personas_group.command("list")
@data_dir_option
def list_cmd(data_dir) -> None:
    """Every persona: id, status, version, name, last change; broken ones with the reason."""
    from kbchat.knowledge import base_names

    records = _records(data_dir)
    catalog = records.catalog(base_names(settings_for(data_dir)))
    rows = records.records()
    for r in rows:
        name = r.persona.display_name("en") if r.persona else "-"
        state = "broken: " + catalog.broken[r.id] if r.id in catalog.broken else r.status
        mark = " (default)" if r.persona and r.persona.default and r.status == "published" else ""
        click.echo(f"{r.id}{mark}\t{name}\tv{r.version}\t{r.updated_at[:16]} {r.updated_by or '-'}\t{state}")
    click.echo(f"{len(rows)} persona(s), {len(catalog.personas)} in the chat", err=True)


def _yaml_files(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
        else:
            files.append(p)
    return files


@personas_group.command("import")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--draft", is_flag=True, help="Import as drafts (not in the chat until published).")
@data_dir_option
def import_cmd(paths, draft, data_dir) -> None:
    """Import persona YAML files or folders of them (default: the personas folder), and prompt libraries
    in the two-column CSV form (act, prompt) as drafts. All or nothing: a bad file imports none."""
    from kbchat.knowledge import base_names
    from kbchat.personas import base_problem, load_persona, personas_from_prompt_csv

    s = settings_for(data_dir)
    records = _records(data_dir)
    paths = paths or (Path(s.personas_dir),)
    csvs = [p for p in paths if p.is_file() and p.suffix.lower() == ".csv"]
    files = _yaml_files(tuple(p for p in paths if p not in csvs))
    problems: list[str] = []
    found: dict = {}
    for f in files:
        try:
            p = load_persona(f)
        except KbchatError as err:
            problems.append(str(err))
            continue
        if p.id in found:
            problems.append(f"{f}: field 'id': '{p.id}' is already used by {found[p.id][0]}")
        found[p.id] = (f, p)
    defaults = [str(f) for f, p in found.values() if p.default]
    if len(defaults) > 1:
        problems.append(f"field 'default': exactly one persona must have 'default: true' (found: {', '.join(defaults)})")
    drafts = []
    taken = {r.id for r in records.records()} | set(found)
    for c in csvs:
        try:
            got, rows = personas_from_prompt_csv(c.read_bytes(), c.name, taken)
        except (KbchatError, OSError) as err:
            problems.append(str(err))
            continue
        for line in rows:
            click.echo(f"{line}: left out", err=True)
        drafts += got
        taken |= {p.id for p in got}
    if problems:
        for line in problems:
            click.echo(line, err=True)
        raise click.ClickException(f"nothing imported: {len(problems)} problem(s)")
    if not found and not drafts:
        raise click.ClickException("nothing to import: no persona files (*.yaml) or CSV rows found")
    bases = base_names(s)
    for _, p in found.values():
        if problem := base_problem(p, bases):
            click.echo(f"persona '{p.id}': field '{problem[0]}': {problem[1]} (left out of the chat until then)",
                       err=True)
    try:
        counts = records.import_personas([p for _, p in found.values()], by=cli_user(),
                                         status="draft" if draft else None, address="cli")
        csv_counts = records.import_personas(drafts, by=cli_user(), status="draft", address="cli")
    except KbchatError as err:
        raise fail(err) from None
    click.echo(f"{counts['created']} created, {counts['updated']} updated, {counts['unchanged']} unchanged"
               + (f"; {csv_counts['created']} draft(s) from CSV" if csvs else ""))


@personas_group.command("export")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--with-drafts", is_flag=True, help="Export the drafts too.")
@click.option("--id", "ids", multiple=True, help="Export only this persona (repeatable).")
@data_dir_option
def export_cmd(folder, with_drafts, ids, data_dir) -> None:
    """Write each persona as FOLDER/<id>.yaml (default ./personas-export), ready for `kbchat personas import`."""
    from kbchat.personas import dump_persona

    folder = folder or EXPORT_DIR
    rows = [r for r in _records(data_dir).records() if r.persona is not None
            and (with_drafts or r.status == "published") and (not ids or r.id in ids)]
    missing = set(ids) - {r.id for r in rows}
    if missing:
        raise click.ClickException(f"unknown persona: {', '.join(sorted(missing))}")
    folder.mkdir(parents=True, exist_ok=True)
    for r in rows:
        target = folder / f"{r.id}.yaml"
        tmp = target.with_suffix(".yaml.tmp")
        tmp.write_text(dump_persona(r.persona), encoding="utf-8")
        tmp.replace(target)
    click.echo(f"{len(rows)} persona(s) written to {folder}")


@personas_group.command("versions")
@click.argument("persona_id")
@data_dir_option
def versions_cmd(persona_id, data_dir) -> None:
    """The versions of a persona, newest first: version, action, who, when, the fields changed."""
    versions = _records(data_dir).versions(persona_id)
    if not versions:
        raise click.ClickException(f"no versions of persona '{persona_id}'")
    for v in versions:
        click.echo(f"v{v.version}\t{v.action}\t{v.changed_by or '-'}\t{v.changed_at[:19]}\t{', '.join(v.changed)}")


@personas_group.command("restore")
@click.argument("persona_id")
@click.argument("version", type=int)
@data_dir_option
def restore_cmd(persona_id, version, data_dir) -> None:
    """Make an earlier VERSION of a persona current again (a removed persona comes back)."""
    try:
        _records(data_dir).restore(persona_id, version, by=cli_user(), address="cli")
    except KbchatError as err:
        raise fail(err) from None
    click.echo(f"persona '{persona_id}' restored to version {version}")


@personas_group.command("publish")
@click.argument("persona_id")
@click.option("--draft", is_flag=True, help="Take it back to draft instead.")
@data_dir_option
def publish_cmd(persona_id, draft, data_dir) -> None:
    """Publish a draft persona (it appears in the chat for the groups it is visible to)."""
    try:
        _records(data_dir).set_status(persona_id, "draft" if draft else "published", by=cli_user(), address="cli")
    except KbchatError as err:
        raise fail(err) from None
    click.echo(f"persona '{persona_id}' is now {'a draft' if draft else 'published'}")


@personas_group.command("remove")
@click.argument("persona_id")
@data_dir_option
def remove_cmd(persona_id, data_dir) -> None:
    """Remove a persona (its versions stay: `kbchat personas restore` brings it back)."""
    try:
        _records(data_dir).delete(persona_id, by=cli_user(), address="cli")
    except KbchatError as err:
        raise fail(err) from None
    click.echo(f"persona '{persona_id}' removed")
