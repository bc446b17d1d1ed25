import sys

from bnstudy.cli import main

sys.exit(main())
