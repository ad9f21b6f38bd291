import sys

from inferbox.cli import main

sys.exit(main())
