"""Allow ``python -m fleet_agent`` as an alias of the ``fleet-agent`` command."""

import sys

from fleet_agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
