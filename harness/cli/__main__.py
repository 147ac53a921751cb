"""``python -m harness.cli`` runs the ganbench command line."""
import sys

from harness.cli import main

sys.exit(main())
