"""`kbchat users` (accounts, roles and groups) and `kbchat threads` (chat history, read-only). Every change is
written to the audit log under the CLI user (cli:<login>)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kbchat.cli.context import audit as _audit
from kbchat.cli.context import data_dir_option as _data_dir_option
from kbchat.cli.context import fail as _fail
from kbchat.cli.context import settings_for
from kbchat.errors import KbchatError


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


def _accounts(data_dir: Path | None):
    from kbchat.records.accounts import Accounts
    from kbchat.records.database import open_database

    s = settings_for(data_dir)
    try:
        return s, Accounts(open_database(s))
    except KbchatError as err:
        raise _fail(err) from None


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")


@commands.group("users")
def users_group() -> None:
    """Accounts and roles. Login turns on as soon as one user has a password (restart the app)."""


@users_group.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Make the user an administrator.")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_data_dir_option
def users_add(name, admin, password_stdin, data_dir) -> None:
    """Create user NAME (prompts for the password twice unless --password-stdin)."""
    s, accounts = _accounts(data_dir)
    try:
        from kbchat.records.accounts import check_name

        check_name(name)
        if accounts.get(name) is not None:
            raise KbchatError(f"user {name} already exists")
        acct = accounts.add(name, _read_password(password_stdin), role="admin" if admin else "user")
    except KbchatError as err:
        raise _fail(err) from None
    first = accounts.password_users() == 1
    _audit(accounts.db, "user.add", acct.identifier, {"role": acct.role})
    click.echo(f"added {acct.identifier} ({acct.role})")
    if first and s.auth == "auto":
        click.echo("login is now on: restart the app (bash scripts/run.sh) and sign in", err=True)


@users_group.command("list")
@_data_dir_option
def users_list(data_dir) -> None:
    """Users with their role, how they sign in and their groups (a group from the identity provider is
    marked *)."""
    from kbchat.records.access import Access

    _s, accounts = _accounts(data_dir)
    access = Access(accounts.db)
    rows = accounts.list()
    for a in rows:
        how = "password" if a.has_password else a.source
        groups = ",".join(g + ("" if "admin" in src else "*")
                          for g, src in sorted(access.memberships_of(a.identifier).items())) or "-"
        state = "\tdisabled" if a.disabled else ""
        click.echo(f"{a.identifier}\t{a.role}\t{how}\t{groups}\t{a.created_at[:19]}Z{state}")
    click.echo(f"{len(rows)} user(s)", err=True)


@users_group.command("remove")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_data_dir_option
def users_remove(name, yes, data_dir) -> None:
    """Remove user NAME with their threads and uploads (their shared Q&A records stay, under their name)."""
    from kbchat.records.history import History, delete_user_threads
    from kbchat.search.loaders import open_store

    s, accounts = _accounts(data_dir)
    if accounts.get(name) is None:
        raise click.ClickException(f"no user named {name}")
    if not yes and sys.stdin.isatty():
        click.confirm(f"Remove {name} and all their chats and uploads?", abort=True)
    store = open_store(s, None)  # drops need no model
    try:
        n = delete_user_threads(History(accounts.db), store, s.data_dir, name, s.uploads_dir)
        accounts.remove(name)
        _audit(accounts.db, "user.remove", name, {"threads": n})
    except KbchatError as err:
        raise _fail(err) from None
    finally:
        store.close()
    click.echo(f"removed {name} and {n} thread(s)")


@users_group.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@_data_dir_option
def users_passwd(name, password_stdin, data_dir) -> None:
    """Set the password of user NAME."""
    _s, accounts = _accounts(data_dir)
    if accounts.get(name) is None:
        raise click.ClickException(f"no user named {name}")
    try:
        accounts.set_password(name, _read_password(password_stdin))
    except KbchatError as err:
        raise _fail(err) from None
    _audit(accounts.db, "user.password", name)
    click.echo(f"password of {name} changed")


@users_group.command("role")
@click.argument("name")
@click.argument("role", type=click.Choice(["admin", "user"]))
@_data_dir_option
def users_role(name, role, data_dir) -> None:
    """Make user NAME an admin or a plain user."""
    _s, accounts = _accounts(data_dir)
    try:
        accounts.set_role(name, role)
    except KbchatError as err:
        raise _fail(err) from None
    _audit(accounts.db, "user.role", name, {"role": role})
    click.echo(f"{name} is now {role}")


def _switch(name: str, data_dir, disabled: bool) -> None:
    _s, accounts = _accounts(data_dir)
    try:
        accounts.set_disabled(name, disabled)
    except KbchatError as err:
        raise _fail(err) from None
    _audit(accounts.db, "user.disable" if disabled else "user.enable", name, None)
    click.echo(f"{name} is now {'disabled: sign-in, session and API keys refused' if disabled else 'enabled'}")


@users_group.command("disable")
@click.argument("name")
@_data_dir_option
def users_disable(name, data_dir) -> None:
    """Disable user NAME: no sign-in, their session and API keys refused at once; chats, groups and shared
    records stay (`kbchat users enable NAME` undoes it)."""
    _switch(name, data_dir, True)


@users_group.command("enable")
@click.argument("name")
@_data_dir_option
def users_enable(name, data_dir) -> None:
    """Enable user NAME again after `kbchat users disable`."""
    _switch(name, data_dir, False)


@users_group.command("groups")
@click.argument("name")
@click.option("--add", "add", multiple=True, metavar="GROUP", help="Add NAME to GROUP (repeatable, or a,b).")
@click.option("--remove", "remove", multiple=True, metavar="GROUP", help="Take NAME out of GROUP.")
@_data_dir_option
def users_groups(name, add, remove, data_dir) -> None:
    """Show or change the groups of user NAME (hand-set memberships; those from the identity provider
    are refreshed at each sign-in and marked *)."""
    from kbchat.records.access import Access

    _s, accounts = _accounts(data_dir)
    access = Access(accounts.db)
    if accounts.get(name) is None:
        raise click.ClickException(f"no user named {name}")
    split = lambda vals: [g.strip() for v in vals for g in v.split(",") if g.strip()]  # noqa: E731
    try:
        for g in split(add):
            if not access.group_exists(g):
                raise KbchatError(f"no group named {g} (create it with `kbchat groups add {g}`)")
        for g in split(add):
            if access.add_member(name, g):
                _audit(accounts.db, "group.member.add", name, {"group": g})
        for g in split(remove):
            if access.remove_member(name, g):
                _audit(accounts.db, "group.member.remove", name, {"group": g})
            elif g in access.memberships_of(name):
                click.echo(f"{name} is in {g} through the identity provider: it comes back at the next sign-in",
                           err=True)
    except KbchatError as err:
        raise _fail(err) from None
    mine = access.memberships_of(name)
    click.echo(f"{name}: " + (", ".join(g + ("" if "admin" in src else "*") for g, src in sorted(mine.items()))
                              or "no groups"))


@commands.group("threads")
def threads_group() -> None:
    """Chat history (administrator, read-only)."""


@threads_group.command("list")
@click.option("--user", default=None, metavar="NAME", help="Only this user's threads.")
@click.option("--limit", type=int, default=50, show_default=True)
@_data_dir_option
def threads_list(user, limit, data_dir) -> None:
    """Threads, newest first: id, time, user, name."""
    from kbchat.records.history import History

    _s, accounts = _accounts(data_dir)
    rows, _ = History(accounts.db).list_threads(user_identifier=user, everyone=user is None, first=limit)
    for r in rows:
        click.echo(f"{r['id']}\t{r['createdAt'][:19]}Z\t{r['userIdentifier']}\t{r['name'] or ''}")
    click.echo(f"{len(rows)} thread(s)", err=True)
