"""The RaasJob and Robot CustomResourceDefinitions, generated from the pydantic models.

``python -m raas_operator.crds manifests/crds`` (re)writes the YAML files.
"""

from raas_operator.crds.generate import (
    API_VERSION,
    GROUP,
    VERSION,
    raasjob_crd,
    rendered_crds,
    robot_crd,
    write_crds,
)
from raas_operator.crds.schema import UnsupportedSchemaError, structural_schema

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "UnsupportedSchemaError",
    "raasjob_crd",
    "rendered_crds",
    "robot_crd",
    "structural_schema",
    "write_crds",
]
