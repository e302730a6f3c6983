import sys

from hil.scenarios.runner import main

sys.exit(main())
