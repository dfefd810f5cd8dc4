import sys

from beam_pipelines.cli.commands import main

sys.exit(main())
