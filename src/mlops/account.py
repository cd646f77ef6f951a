"""Account-specific names, read from the bootstrap stack's outputs (never hard-coded)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mlops.aws import call
from mlops.errors import ConfigError

REQUIRED = (
    "DataBucket",
    "ArtifactBucket",
    "CaptureBucket",
    "KmsKeyArn",
    "SageMakerExecutionRoleArn",
    "GlueJobName",
    "EcrRepositoryUri",
    "ModelPackageGroupName",
)


@dataclass(frozen=True)
class Account:
    region: str
    outputs: dict[str, str]

    def __getattr__(self, name: str) -> str:
        # Output names read as attributes: account.DataBucket
        outputs = self.__dict__.get("outputs", {})
        if name in outputs:
            return outputs[name]
        raise AttributeError(name)


def read(cfn: Any, stack: str, region: str) -> Account:
    """Describe the bootstrap stack and check that every output the pipeline uses is there."""
    stacks = call(f"read bootstrap stack {stack}", cfn.describe_stacks, StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    missing = [k for k in REQUIRED if not outputs.get(k)]
    if missing:
        raise ConfigError(
            f"bootstrap stack {stack} lacks outputs {', '.join(missing)}: "
            "re-deploy cloudformation/bootstrap.yaml (scripts/bootstrap)"
        )
    return Account(region, outputs)
