"""python -m poolhead ...: the same as the `poolhead` command."""

from poolhead.use.cli import main

raise SystemExit(main())
