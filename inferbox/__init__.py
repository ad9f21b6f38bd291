"""inferbox: inference in a box.

Deploys ML models, serves their predictions and publishes them to outside callers behind API keys and
rate limits, for many tenants at once.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("inferbox")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
