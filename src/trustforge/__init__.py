"""TrustForge: from one YAML spec to a trained, evaluated, verified model package.

The public API:

    spec = trustforge.load_spec("examples/digits_cnn.yaml")
    result = trustforge.run(spec)                 # train → evaluate → package
    model = trustforge.Model.load(result.package) # verified before it is parsed
    model.predict(data)

Names are imported on first use, so `trustforge validate` and `--help` do not pay for torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustforge._lazy import lazy_names
from trustforge.errors import DataError, IntegrityError, ModelError, RunError, SpecError, TrainingError, TrustForgeError

if TYPE_CHECKING:
    from trustforge.package import Model
    from trustforge.pipeline import RunResult, run
    from trustforge.settings import Settings
    from trustforge.spec import TaskSpec, load_spec

__version__ = "0.1.0"

_LAZY = {
    "load_spec": "trustforge.spec",
    "TaskSpec": "trustforge.spec",
    "run": "trustforge.pipeline",
    "RunResult": "trustforge.pipeline",
    "Model": "trustforge.package",
    "Settings": "trustforge.settings",
}

__all__ = [
    "load_spec",
    "run",
    "Model",
    "RunResult",
    "TaskSpec",
    "Settings",
    "TrustForgeError",
    "SpecError",
    "DataError",
    "IntegrityError",
    "ModelError",
    "TrainingError",
    "RunError",
    "__version__",
]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
