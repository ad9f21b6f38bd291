"""OpenAI-compatible endpoints on the replica, at KServe's huggingface-server paths (``/openai/v1/...``):
request bodies (schemas.py), OpenAI's error shape (errors.py), the completion cap from the context and
the gateway's token budget (budget.py), answers and stream chunks (responses.py), and the handlers
(endpoints.py)."""
