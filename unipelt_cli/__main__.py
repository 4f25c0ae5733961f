from unipelt_cli.cli import main

import sys

sys.exit(main())
