"""Language models on a replica: the engine interface (engine.py), the transformers engine that
batches concurrent generations step by step (transformers_engine.py), incremental detokenising with
stop strings (text.py), prompts from chat messages (prompts.py) and sentence embeddings
(embeddings.py). The OpenAI endpoints in ``inferbox.server.openai`` are built on these."""
