"""``python -m voiceengine``: the same as the ``voiceengine`` command."""

import sys

from .cli import main

sys.exit(main())
