"""The task spec: one YAML file that says what to learn, from what, and how."""

from trustforge.spec._load import load_spec, redact_spec, spec_digest, spec_to_dict, spec_to_yaml
from trustforge.spec._model import (
    AdamSpec,
    AdamWSpec,
    CNNSpec,
    DataSpec,
    EvaluateSpec,
    MLPSpec,
    MonitorSpec,
    NoSchedulerSpec,
    PrivacySpec,
    RNNSpec,
    RobustnessSpec,
    SGDSpec,
    TaskSpec,
    TextSpec,
    TrainSpec,
)

__all__ = [
    "AdamSpec",
    "AdamWSpec",
    "NoSchedulerSpec",
    "SGDSpec",
    "TextSpec",
    "TaskSpec",
    "DataSpec",
    "MLPSpec",
    "CNNSpec",
    "RNNSpec",
    "TrainSpec",
    "EvaluateSpec",
    "RobustnessSpec",
    "PrivacySpec",
    "MonitorSpec",
    "load_spec",
    "redact_spec",
    "spec_to_dict",
    "spec_to_yaml",
    "spec_digest",
]
