"""Real HTTP servers on loopback standing in for the model services: the LLM (llm.py), embeddings and
reranking (models.py), both on the lifecycle of loopback.py."""
