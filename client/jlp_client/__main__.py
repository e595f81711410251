"""``python -m jlp_client``: the same as ``jlp``."""

from jlp_client.cli import main

raise SystemExit(main())
