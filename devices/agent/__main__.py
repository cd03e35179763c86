"""Allow ``python -m devices.agent`` as an alias of the ``fleet-agent`` command."""

import sys

from devices.agent.cli import main

if __name__ == "__main__":
    sys.exit(main())
