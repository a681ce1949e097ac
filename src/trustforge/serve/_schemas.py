"""Request and response bodies of both protocols, as pydantic models (the OpenAPI schema).

The Open Inference Protocol v2 (KServe, Triton, MLServer) and MLflow's scoring protocol. The
infer and invocations routes parse their bodies themselves (a v2 body may carry binary tensor
data after its JSON header), but with these models, so the schema `/docs` shows is the one
the server enforces. Unknown fields are ignored, as both protocols allow.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "RequestInput",
    "RequestOutput",
    "InferenceRequest",
    "ResponseOutput",
    "InferenceResponse",
    "TensorMetadata",
    "ModelMetadata",
    "ServerMetadata",
    "ErrorBody",
    "DataFrameSplit",
    "ScoringRequest",
    "ScoringResponse",
    "ScoringError",
    "json_kind",
    "Ready",
    "Live",
    "ModelReady",
    "SCORING_FORMATS",
]

SCORING_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


# ---------------------------------------------------------------------------- Open Inference Protocol v2


class RequestInput(_Body):
    """One input tensor: `data` is row-major (flat or nested); absent when sent as binary data."""

    name: str = Field(..., min_length=1, max_length=256)
    shape: list[int] = Field(..., min_length=1, max_length=8)
    datatype: str = Field(..., description="BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64 or BYTES")
    parameters: Optional[dict[str, Any]] = Field(
        None, description='{"binary_data_size": N} when the data follow the JSON header (no other input parameter is accepted)'
    )
    data: Optional[list[Any]] = None


class RequestOutput(_Body):
    """An output the client asks for: `parameters.binary_data` asks for it as binary data,
    `parameters.classification: k` for its k highest classes as `"score:index:label"` strings
    (Triton's classification extension); any other parameter is refused (400)."""

    name: str = Field(..., min_length=1, max_length=256)
    parameters: Optional[dict[str, Any]] = None


class InferenceRequest(_Body):
    """`POST /v2/models/{name}[/versions/{version}]/infer`.

    With the binary tensor data extension the body is this JSON object, whose length is the
    `Inference-Header-Content-Length` header, followed by each binary input's bytes in order.
    """

    id: Optional[str] = Field(None, max_length=256)
    parameters: Optional[dict[str, Any]] = Field(
        None, description='{"binary_data_output": true} asks for every output as binary data (no other request parameter is accepted)'
    )
    inputs: list[RequestInput] = Field(..., min_length=1, max_length=1024)
    outputs: Optional[list[RequestOutput]] = Field(None, max_length=64)


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: Optional[dict[str, Any]] = None
    data: Optional[list[Any]] = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: Optional[str] = None
    id: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ErrorBody(BaseModel):
    """Every error of the v2 routes (and of the server outside `/invocations`)."""

    error: str


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


# ---------------------------------------------------------------------------- MLflow scoring


class DataFrameSplit(_Body):
    """pandas' `to_dict(orient="split")`: column names and rows (an index is ignored)."""

    columns: list[str] = Field(..., min_length=1)
    data: list[list[Any]] = Field(..., min_length=1)
    index: Optional[list[Any]] = None


class ScoringRequest(_Body):
    """`POST /invocations`: exactly one of the four MLflow input formats.

    - `dataframe_split`: `{"columns": [...], "data": [[...], ...]}`;
    - `dataframe_records`: `[{"column": value, ...}, ...]`;
    - `instances`: rows (records, or tensors for a tensor model);
    - `inputs`: columns (`{"column": [values]}`), or a tensor for a tensor model.
    """

    dataframe_split: Optional[DataFrameSplit] = None
    dataframe_records: Optional[list[dict[str, Any]]] = Field(None, min_length=1)
    instances: Optional[list[Any]] = Field(None, min_length=1)
    inputs: Optional[dict[str, Any] | list[Any]] = None
    params: Optional[dict[str, Any]] = Field(None, description="MLflow's inference parameters: none are taken, so null or {} only")

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        # Before the fields are read, so that a second, empty format is named as such, not as a list too short.
        if isinstance(data, dict):
            given = [f for f in SCORING_FORMATS if data.get(f) is not None]
            if len(given) != 1:
                raise ValueError(f"the body must hold exactly one of {', '.join(SCORING_FORMATS)}; got {given or 'none'}")
            if "inputs" in given and not isinstance(data["inputs"], (dict, list)):
                raise ValueError(
                    f'inputs must be an object of columns ({{"column": [values]}}) or a list (a tensor); got {json_kind(data["inputs"])}'
                )
        return data

    @property
    def format(self) -> str:
        return next(f for f in SCORING_FORMATS if getattr(self, f) is not None)


class ScoringResponse(BaseModel):
    predictions: list[Any]
    ood: Optional[dict[str, Any]] = None  # the out-of-distribution verdict (`--ood flag`)


class ScoringError(BaseModel):
    """MLflow's error body, used by `/invocations`."""

    error_code: str
    message: str


def json_kind(value: Any) -> str:
    """What a JSON value is, in words (never the value: it may be personal data), for messages
    about a request that holds the wrong kind of value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
