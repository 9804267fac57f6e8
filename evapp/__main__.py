import sys

from evapp.cli.main import main

sys.exit(main())
