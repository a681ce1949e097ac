"""The model package: a folder of JSON and safetensors, verified before it is parsed."""

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
from trustforge.package._manifest import build_manifest, write_model_package
from trustforge.package._model import Model

__all__ = [
    "write_model_package",
    "encode_manifest",
    "Model",
    "build_manifest",
    "write_package",
    "read_package",
    "VerifiedPackage",
    "UnsafeNoVerify",
    "sha256_file",
    "FORMAT",
    "FORMAT_VERSION",
    "SIGNATURE_FILE",
]
