"""TrustForge: from one YAML spec to a trained, evaluated, verified model package.

The public API:

    spec = trustforge.load_spec("examples/digits_cnn.yaml")
    result = trustforge.run(spec)                 # train → evaluate → package
    model = trustforge.Model.load(result.package) # verified before it is parsed
    model.predict(data)
"""

from trustforge.errors import DataError, IntegrityError, ModelError, RunError, SpecError, TrainingError, TrustForgeError
from trustforge.package import Model
from trustforge.pipeline import RunResult, run
from trustforge.settings import Settings
from trustforge.spec import TaskSpec, load_spec

__version__ = "0.1.0"

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
