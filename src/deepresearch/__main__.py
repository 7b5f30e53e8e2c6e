"""``python -m deepresearch`` is the ``deepresearch`` command."""

from deepresearch.cli import main

main()
