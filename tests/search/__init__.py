"""kbchat/search: the stores (embedded, PostgreSQL), lexical index, retrieval, precision, model servers."""
