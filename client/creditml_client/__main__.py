"""`python -m creditml_client`: the CLI (the same as the `creditml-client` command)."""

import sys

from creditml_client.cli import main

if __name__ == "__main__":
    sys.exit(main())
