"""``python -m inferbox.server``: run one model replica (see :mod:`inferbox.server.cli`)."""

from inferbox.server.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
