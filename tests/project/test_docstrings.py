"""Every public name of every pf module carries a docstring (as baal enforces)."""

import importlib
import inspect
import pkgutil

import pytest

import pf

MODULES = sorted(m.name for m in pkgutil.iter_modules(pf.__path__, "pf.")
                 if m.name != "pf.__main__")


@pytest.mark.parametrize("module_name", MODULES)
def test_public_names_are_documented(module_name):
    module = importlib.import_module(module_name)
    assert module.__doc__, f"{module_name} has no module docstring"
    assert hasattr(module, "__all__"), f"{module_name} does not declare __all__"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            if not inspect.getdoc(obj):
                undocumented.append(name)
            for attr, member in vars(obj).items() if inspect.isclass(obj) else ():
                if (inspect.isfunction(member) and not attr.startswith("_")
                        and not inspect.getdoc(member)):
                    undocumented.append(f"{name}.{attr}")
    assert not undocumented, f"{module_name}: no docstring on {undocumented}"
