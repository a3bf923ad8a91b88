"""``python -m policy_sso.cli``: the same command line as ``policy-sso``."""

import sys

from policy_sso.cli.main import main

sys.exit(main())
