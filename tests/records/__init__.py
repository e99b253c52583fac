"""kbchat/records: the database, accounts and chat history."""
