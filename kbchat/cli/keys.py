"""`kbchat keys create|list|revoke`: API keys for programs that call kbchat's HTTP API as one of its users.
A new key is printed once (only its hash is stored); every change goes to the audit log."""

from __future__ import annotations

import click

from kbchat.cli.context import audit as _audit
from kbchat.cli.context import data_dir_option as _data_dir_option
from kbchat.cli.context import fail as _fail
from kbchat.cli.context import settings_for
from kbchat.errors import KbchatError


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


def _keys(data_dir):
    from kbchat.records.accounts import Accounts
    from kbchat.records.database import open_database
    from kbchat.records.keys import ApiKeys

    try:
        db = open_database(settings_for(data_dir))
    except KbchatError as err:
        raise _fail(err) from None
    return Accounts(db), ApiKeys(db)


@commands.group("keys")
def keys_group() -> None:
    """API keys (Authorization: Bearer kbk_...): each acts as its user, with that user's access and quota."""


@keys_group.command("create")
@click.option("--user", "user", required=True, metavar="NAME", help="The user the key acts as.")
@click.option("--label", default="", help="What the key is for (shown by `kbchat keys list`).")
@click.option("--expires", default=None, metavar="90d|12h|30m|never", help="When the key stops working.")
@click.option("--scope", "scopes", default="chat,search", show_default=True,
              help="Comma-separated: chat, search, knowledge, dataset.")
@_data_dir_option
def keys_create(user, label, expires, scopes, data_dir) -> None:
    """Make a key for USER and print it once (only its hash is kept)."""
    from kbchat.cli.context import cli_user

    accounts, keys = _keys(data_dir)
    if accounts.get(user) is None:
        raise click.ClickException(f"no user named {user}")
    try:
        key, rec = keys.create(user, label=label, scopes=scopes, expires=expires, by=cli_user())
    except KbchatError as err:
        raise _fail(err) from None
    _audit(keys.db, "key.create", rec.id,
           {"user": user, "scopes": list(rec.scopes), "expires": rec.expires_at})
    click.echo(key)
    click.echo(f"key {rec.id} for {user} ({', '.join(rec.scopes)}; expires {rec.expires_at or 'never'}): "
               "store it now, it is not shown again", err=True)


@keys_group.command("list")
@click.option("--user", default=None, metavar="NAME", help="Only this user's keys.")
@_data_dir_option
def keys_list(user, data_dir) -> None:
    """Keys: id, first characters, user, scopes, state, expiry, last use, label."""
    _accounts, keys = _keys(data_dir)
    rows = keys.list(user)
    for k in rows:
        click.echo(f"{k.id}\t{k.prefix}…\t{k.user}\t{','.join(k.scopes)}\t{k.state()}\t"
                   f"{(k.expires_at or 'never')[:19]}\t{(k.last_used_at or '-')[:19]}\t{k.label or '-'}")
    if not rows:
        click.echo("no keys", err=True)


@keys_group.command("revoke")
@click.argument("key_id")
@_data_dir_option
def keys_revoke(key_id, data_dir) -> None:
    """Revoke key KEY_ID (its next request gets 401)."""
    _accounts, keys = _keys(data_dir)
    try:
        rec = keys.revoke(key_id)
    except KbchatError as err:
        raise _fail(err) from None
    _audit(keys.db, "key.revoke", rec.id, {"user": rec.user})
    click.echo(f"revoked {rec.id} ({rec.user})")
