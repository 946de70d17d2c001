"""``python -m depth_pro_ros.cli``: the ``depth-pro-ros`` command."""

import sys

from depth_pro_ros.cli import main

sys.exit(main())
