"""The model package: a folder of JSON and safetensors, verified before it is parsed.

Verifying a package needs no torch: `read_package` checks bytes, and tensors are parsed only
when asked for. `Model` and the manifest builder import torch and the model stages, so they are
imported on first use (`trustforge package verify` starts in a fraction of a second).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trustforge._lazy import lazy_names
from trustforge.package._artefact import (
    EXPORT_FORMATS,
    QUANTIZATIONS,
    export_entries,
    export_entry_version,
    export_path,
    find_exports,
    read_export,
)
from trustforge.package._format import (
    FORMAT,
    FORMAT_VERSION,
    SIGNATURE_FILE,
    UnsafeNoVerify,
    VerifiedPackage,
    encode_manifest,
    read_package,
    sha256_file,
    write_package,
)

if TYPE_CHECKING:
    from trustforge.package._export import (
        ONNX_OPSET,
        OnnxModule,
        export_model,
        onnx_bytes,
        spec_prepared,
        spec_test_split,
        split_for_export,
    )
    from trustforge.package._manifest import build_manifest, write_model_package
    from trustforge.package._model import Model
    from trustforge.package._seal import seal_run_package

_LAZY = {
    "Model": "trustforge.package._model",
    "build_manifest": "trustforge.package._manifest",
    "write_model_package": "trustforge.package._manifest",
    "seal_run_package": "trustforge.package._seal",
    # Exports import torch (and onnx/onnxruntime inside their functions).
    "export_model": "trustforge.package._export",
    "split_for_export": "trustforge.package._export",
    "spec_prepared": "trustforge.package._export",
    "spec_test_split": "trustforge.package._export",
    "onnx_bytes": "trustforge.package._export",
    "OnnxModule": "trustforge.package._export",
    "ONNX_OPSET": "trustforge.package._export",
}

__all__ = [
    "write_model_package",
    "encode_manifest",
    "Model",
    "seal_run_package",
    "build_manifest",
    "write_package",
    "read_package",
    "VerifiedPackage",
    "UnsafeNoVerify",
    "sha256_file",
    "FORMAT",
    "FORMAT_VERSION",
    "SIGNATURE_FILE",
    "export_model",
    "export_entries",
    "export_entry_version",
    "export_path",
    "find_exports",
    "read_export",
    "split_for_export",
    "spec_prepared",
    "spec_test_split",
    "onnx_bytes",
    "OnnxModule",
    "EXPORT_FORMATS",
    "QUANTIZATIONS",
    "ONNX_OPSET",
]


__getattr__, __dir__ = lazy_names(globals(), _LAZY)
