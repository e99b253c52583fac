"""`kbchat groups` (groups and their quotas) and `kbchat audit` (the audit log). Who may read a knowledge
base is set with `kbchat kb access`; a user's groups with `kbchat users groups`."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from kbchat.cli.context import audit, data_dir_option, fail, settings_for
from kbchat.errors import KbchatError


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


def _access(data_dir: Path | None):
    from kbchat.records.access import Access
    from kbchat.records.database import open_database

    try:
        return Access(open_database(settings_for(data_dir)))
    except KbchatError as err:
        raise fail(err) from None


@commands.group("groups")
def groups_group() -> None:
    """Groups of users: knowledge bases and personas can be limited to them, and a group may have its own
    question quota."""


@groups_group.command("add")
@click.argument("name")
@data_dir_option
def groups_add(name, data_dir) -> None:
    """Create group NAME."""
    access = _access(data_dir)
    try:
        access.add_group(name)
    except KbchatError as err:
        raise fail(err) from None
    audit(access.db, "group.add", name)
    click.echo(f"added group {name}")


@groups_group.command("list")
@data_dir_option
def groups_list(data_dir) -> None:
    """Groups with their quota, members and the bases they may read."""
    access = _access(data_dir)
    rows = access.list_groups()
    for g in rows:
        bases = access.bases_naming(g.name)
        quota = "default" if g.quota_per_day is None else f"{g.quota_per_day}/day"
        click.echo(f"{g.name}\t{quota}\t{len(g.members)} member(s): {', '.join(g.members) or '-'}\t"
                   f"bases: {', '.join(bases) or '-'}")
    click.echo(f"{len(rows)} group(s)", err=True)


@groups_group.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Remove it even while knowledge bases name it: they are then readable by admins and the "
                   "rest of their list (never by everybody).")
@data_dir_option
def groups_remove(name, force, data_dir) -> None:
    """Remove group NAME and its memberships (refused while a knowledge base names it, unless --force)."""
    access = _access(data_dir)
    try:
        changed = access.remove_group(name, force=force)
    except KbchatError as err:
        raise fail(err) from None
    audit(access.db, "group.remove", name, {"bases": changed} if changed else None)
    click.echo(f"removed group {name}" + (f"; {', '.join(changed)} no longer name it" if changed else ""))


@groups_group.command("quota")
@click.argument("name")
@click.argument("per_day", metavar="N|default")
@data_dir_option
def groups_quota(name, per_day, data_dir) -> None:
    """Questions per day for members of NAME ('default': KBCHAT_QUOTA_QUESTIONS_PER_DAY)."""
    access = _access(data_dir)
    try:
        n = None if per_day == "default" else int(per_day)
    except ValueError:
        raise click.ClickException(f"not a number of questions: {per_day!r}") from None
    try:
        access.set_group_quota(name, n)
    except KbchatError as err:
        raise fail(err) from None
    audit(access.db, "group.quota", name, {"per_day": n})
    click.echo(f"{name}: " + ("the default quota" if n is None else f"{n} questions per day"))


def _since(value: str | None) -> str | None:
    """--since: a date, an ISO time, or a span back from now (30m, 12h, 7d)."""
    if not value:
        return None
    v = value.strip()
    if v[-1:] in ("m", "h", "d") and v[:-1].isdigit():
        n = int(v[:-1])
        span = {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n)}[v[-1]]
        return (datetime.now(timezone.utc) - span).isoformat(timespec="microseconds")
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        raise click.ClickException(f"--since: {value!r} is not a date, a time or a span like 7d") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


@commands.command("audit")
@click.option("--since", default=None, help="From this date or time (2026-12-01, 2026-12-01T08:00) or span (7d, 12h).")
@click.option("--user", default=None, metavar="NAME", help="Only what this user did.")
@click.option("--action", default=None, help="Only this action (e.g. login.failed, kb.access; kb.* for a family).")
@click.option("--limit", type=int, default=None, help="Only the newest N lines.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@data_dir_option
def audit_cmd(since, user, action, limit, as_json, data_dir) -> None:
    """The audit log, oldest first: sign-ins, user, group and access changes, knowledge-base and persona
    changes, review decisions, sheet imports and exports (who, when, what, from where)."""
    access = _access(data_dir)
    rows = access.audit_log(since=_since(since), user=user, action=action, limit=limit)
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, ensure_ascii=False))
        else:
            detail = json.dumps(r["detail"], ensure_ascii=False) if r["detail"] else ""
            click.echo(f"{r['at'][:19]}Z\t{r['user_identifier'] or '-'}\t{r['action']}\t{r['target'] or ''}\t"
                       f"{r['address'] or ''}\t{detail}".rstrip())
    click.echo(f"{len(rows)} line(s)", err=True)
