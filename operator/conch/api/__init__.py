"""The Conch API (serving.conch.dev/v1alpha1): the single source of truth for crds/."""

from conch.api.common import API_VERSION, GROUP, VERSION, Condition, ObjectMeta
from conch.api.grant import ModelAccessGrant, ModelAccessGrantSpec
from conch.api.modelservice import ModelService, ModelServiceSpec, ModelServiceStatus
from conch.api.modelversion import ModelVersion, ModelVersionSpec, ModelVersionStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ModelAccessGrant",
    "ModelAccessGrantSpec",
    "ModelService",
    "ModelServiceSpec",
    "ModelServiceStatus",
    "ModelVersion",
    "ModelVersionSpec",
    "ModelVersionStatus",
    "ObjectMeta",
]
