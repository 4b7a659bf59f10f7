"""``python -m sae_lens_match.cli``: the same as the ``sae-lens-match`` command."""

import sys

from sae_lens_match.cli import main

sys.exit(main())
