"""kbchat: talk to your internal knowledge base. The UI-free core (no Chainlit import here)."""

__version__ = "0.1.0"
