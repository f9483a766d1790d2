"""`python -m flowact ...`: the `flowact` command, for launchers that start a module (`torchrun -m flowact train`)."""

from .cli import main

main()
