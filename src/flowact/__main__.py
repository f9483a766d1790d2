"""`python -m flowact ...`: the `flowact` command, for launchers that start a module (`torchrun -m flowact train`)."""

from .cli import main

if __name__ == "__main__":  # an import (a tool that imports every module) runs nothing
    main()
