import sys

from evapp.cli import main

sys.exit(main())
