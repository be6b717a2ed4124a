import sys

from dpir.cli import main

sys.exit(main())
