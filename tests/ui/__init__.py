"""kbchat/ui without a browser: the handlers in a Chainlit context, sign-in modes, load on a real app."""
