"""``python -m shiftattack`` runs the command line."""

import sys

from shiftattack.cli.main import main

sys.exit(main())
