import sys

from unipelt_cli.cli import main

sys.exit(main())
