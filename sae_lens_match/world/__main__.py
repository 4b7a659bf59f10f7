"""``python -m sae_lens_match.world ...``: an alias of ``sae-lens-match world ...``."""

import sys

from sae_lens_match.cli import main

if __name__ == "__main__":
    sys.exit(main(["world", *sys.argv[1:]]))
