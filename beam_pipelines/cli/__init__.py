"""The ``shopstream`` command and what its commands do beyond assembling pipelines.

    arguments.py    every command's arguments, defaults and help (``build_parser``)
    commands.py     one handler per command, and ``main``
    report.py       ``shopstream report``: one HTML page about an output folder
    deploy_emr.py   ``shopstream deploy emr``: the jobs on Flink on Amazon EMR

``python -m beam_pipelines.cli`` is ``shopstream``.
"""

from beam_pipelines.cli.commands import EXIT_BAD_ARGUMENTS, EXIT_FAILED, main

__all__ = ['EXIT_BAD_ARGUMENTS', 'EXIT_FAILED', 'main']
