"""``python -m wagerwire`` runs the CLI."""

import sys

from wagerwire.cli import main

sys.exit(main())
