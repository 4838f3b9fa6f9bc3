import sys

from morphnas.search.cli import main

sys.exit(main())
