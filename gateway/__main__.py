"""``python -m gateway``: the same command line as the ``callgate`` script."""

from gateway.cli import main

raise SystemExit(main())
