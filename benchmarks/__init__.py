"""inferbox's benchmark harness: `python -m benchmarks` (see docs/benchmarks.md).

It measures inferbox against KServe's Python ModelServer and MLServer serving the same scikit-learn
model, plus the control-plane numbers the product promises (create → Ready, scale from zero, idle RSS,
listing 1,000 models, API key validation), and records the result with the machine and versions.
"""
