import sys

from tau_adapters.cli.main import main

sys.exit(main())
