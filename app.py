"""What `chainlit run app.py` loads: kbchat's UI layer (kbchat/ui/) registers itself on import."""

import kbchat.ui.app  # noqa: F401
