"""The Chainlit app: importing this module registers kbchat's UI with Chainlit.

Importing it registers everything with Chainlit, in this order: sign-in (auth: the mode, the secret and
the callbacks, before `chainlit run` checks for them), the data layer (history), the routes and
middlewares, then the chat handlers, then the HTTP API for programs (kbchat/ui/api/).
"""

import chainlit as cl

from kbchat.ui import auth, routes  # noqa: F401  (registration happens at import)
from kbchat.ui.datalayer import KbchatDataLayer


@cl.data_layer
def _data_layer() -> KbchatDataLayer:
    return KbchatDataLayer()


from kbchat.ui import handlers  # noqa: E402,F401
from kbchat.ui.api import install as _install_api  # noqa: E402

_install_api()  # /v1 (OpenAI-compatible) and /api/v1 (REST, /api/docs): programs with API keys
