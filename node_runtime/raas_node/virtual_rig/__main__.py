"""``python -m raas_node.virtual_rig``: serve a virtual rig until interrupted."""

from raas_node.virtual_rig.cli import main

raise SystemExit(main())
