"""The package's old name: `flowact_cli` and `flowact_cli.<module>` import `flowact` and its
modules (the same module objects, so classes and state are shared). New code imports `flowact`."""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

import flowact

_OLD, _NEW = __name__, "flowact"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """flowact_cli.x.y -> the module flowact.x.y, imported once under its real name."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.startswith(_OLD + "."):
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(_NEW + spec.name[len(_OLD) :])

    def exec_module(self, module):
        pass  # already executed under its real name


if not any(isinstance(f, _Alias) for f in sys.meta_path):
    sys.meta_path.insert(0, _Alias())
sys.modules[_OLD] = flowact
