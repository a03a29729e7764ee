import sys

from tau_adapters.cli import main

sys.exit(main())
