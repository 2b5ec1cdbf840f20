"""``python -m specedge`` runs the command-line interface."""

from specedge.cli import main

raise SystemExit(main())
