"""Model files: the embedded SmolLM2 weights, loading a model or tokenizer, telling a path from a hub id,
and the MiniLM embedder shared by selection, filters and evaluation. Imports nothing heavy at import time."""
