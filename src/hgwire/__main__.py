"""``python -m hgwire``."""

from hgwire.cli import main

raise SystemExit(main())
