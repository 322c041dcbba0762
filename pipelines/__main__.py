"""``python -m gfssm.pipelines ...`` is the ``gfssm`` command (used by submitted jobs)."""

import sys

from gfssm.pipelines.cli import main

sys.exit(main())
