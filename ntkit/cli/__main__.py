import sys

from ntkit.cli import main

sys.exit(main())
