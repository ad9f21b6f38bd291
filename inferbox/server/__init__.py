"""inferbox.server: the process that serves one model replica.

A plain ASGI app (hand-written router, orjson, adaptive batching) run by uvicorn on uvloop/httptools.
It speaks KServe's V1 protocol and the Open Inference Protocol (V2) over HTTP, exposes Prometheus
metrics and a cheap ``/inferbox/stats`` endpoint for autoscaling, and loads exactly one model from a
local file or directory.

It deliberately imports nothing from the rest of inferbox, so a replica starts fast and can be
shipped on its own. Start it with ``python -m inferbox.server --help``.
"""
