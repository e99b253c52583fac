"""kbchat's Chainlit UI: the only package that imports chainlit (a test checks that the core does not).

`kbchat.ui.app` registers everything with Chainlit when imported (what app.py does); the other modules
can be imported on their own (tests, render helpers).
"""
