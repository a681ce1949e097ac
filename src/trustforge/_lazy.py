"""Names a package imports on first use (PEP 562), so importing the package stays cheap.

A package lists its public names and the module each comes from, then ends with

    __getattr__, __dir__ = lazy_names(globals(), {"Model": "trustforge.package._model", ...})

The first `package.Model` imports `trustforge.package._model` and keeps the value in the
package's namespace, so later reads are plain attribute lookups.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

__all__ = ["lazy_names"]


def lazy_names(
    namespace: dict[str, Any], modules: Mapping[str, str], renamed: Mapping[str, str] | None = None
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's module-level `__getattr__` and `__dir__`.

    Args:
        namespace: the package's `globals()` (its `__name__` and `__all__` are read from it).
        modules: public name -> the module it is imported from.
        renamed: public name -> its name in that module, where the two differ.
    """
    package, renamed = namespace["__name__"], renamed or {}

    def __getattr__(name: str) -> Any:
        if name in modules:
            value = getattr(importlib.import_module(modules[name]), renamed.get(name, name))
            namespace[name] = value
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(namespace["__all__"])

    return __getattr__, __dir__
