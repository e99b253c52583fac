"""kbchat/cli: the `kbchat` commands, `kbchat doctor`."""
