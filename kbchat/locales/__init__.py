"""The UI's own lines, one module per language (en is the reference). A new UI language is a new module
here, registered in kbchat.messages.MESSAGES."""
