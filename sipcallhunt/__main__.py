"""``python -m sipcallhunt`` runs the command-line interface."""

from sipcallhunt.cli import main

raise SystemExit(main())
