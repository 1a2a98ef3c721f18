"""``python -m soc2infra_operator`` = ``soc2infra-operator``."""

import sys

from soc2infra_operator.main import main

sys.exit(main())
