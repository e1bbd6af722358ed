import sys

from sevila.cli import main

sys.exit(main())
