"""AWS service rules the pipeline relies on that moto (5.2.5) skips, enforced on moto's backends.

Each rule names the AWS page it comes from. A broken rule raises the error AWS would raise, so the
step stops offline exactly where the first real run would.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from moto.ecr import exceptions as ecr_exceptions
from moto.ecr import models as ecr_models
from moto.iam import models as iam_models
from moto.sagemaker import models as sm_models
from moto.sagemaker import responses as sm_responses
from moto.sagemaker.exceptions import ValidationError

Wrap = Callable[[Any, str, Callable[[Any], Any]], None]
ECR_IMAGE = re.compile(
    r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com/"
    r"(?P<repo>[a-z0-9._/-]+)(?:@(?P<digest>sha256:[a-f0-9]{64})|:(?P<tag>[\w.-]+))?$"
)


def check_image(image: str, what: str) -> None:
    """An ECR image a job, model or package names must exist with that digest or tag.

    CreateTrainingJob / CreateModel fail when SageMaker cannot pull the image (SageMaker Developer
    Guide, "Use Your Own Training Algorithms": the image must be in ECR and readable). Images
    outside ECR are not checked (SageMaker supports private registries for inference only).
    """
    match = ECR_IMAGE.match(image or "")
    if not match:
        return
    backend = ecr_models.ecr_backends[match["account"]][match["region"]]
    repo = backend.repositories.get(match["repo"])
    if repo is None:
        raise ValidationError(f"{what}: repository {match['repo']} does not exist in ECR ({image})")
    for stored in repo.images:
        if match["digest"] and stored.get_image_digest() == match["digest"]:
            return
        if match["tag"] and match["tag"] in stored.image_tags:
            return
        if not match["digest"] and not match["tag"] and "latest" in stored.image_tags:
            return
    raise ValidationError(
        f"{what}: image {image} does not exist in ECR: push it first (the build job's digest)"
    )


class ImageTagAlreadyExists(ecr_exceptions.ServiceException):
    code = "ImageTagAlreadyExistsException"


def _put_image(original: Any) -> Any:
    """A tag an immutable repository already holds, for another image, is refused with AWS's
    ImageTagAlreadyExistsException ("Image tag mutability", Amazon ECR User Guide; moto answers
    ImageAlreadyExistsException)."""

    def put_image(
        self: Any,
        repository_name: str,
        image_manifest: str,
        image_tag: str,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        try:
            return original(self, repository_name, image_manifest, image_tag, *args, **kwargs)
        except ecr_exceptions.ImageAlreadyExistsException as exc:
            held = self.repositories[repository_name].images
            if any(i.image_manifest == image_manifest and image_tag in i.image_tags for i in held):
                raise  # the very same image: AWS answers ImageAlreadyExistsException too
            raise ImageTagAlreadyExists(
                f"The image tag '{image_tag}' already exists in the '{repository_name}' "
                "repository and cannot be overwritten because the repository is immutable."
            ) from exc

    return put_image


def _package_approval(backend: Any, name: str) -> tuple[str, str]:
    arn = backend.model_package_name_mapping.get(name, name)
    package = backend.model_packages.get(arn)
    if package is None:
        raise ValidationError(f"Model package {name} does not exist")
    return package.arn, package.model_approval_status


def _create_model(original: Any) -> Any:
    """CreateModel from a versioned package that is not Approved is refused.

    CreateModelPackage API reference, ModelApprovalStatus: "For versioned models, the value of
    this parameter must be set to Approved to deploy the model."
    """

    def create_model(
        self: Any,
        model_name: str,
        execution_role_arn: str,
        primary_container: Any,
        vpc_config: Any,
        containers: Any,
        tags: Any,
    ) -> Any:
        for container in [primary_container or {}, *(containers or [])]:
            if container.get("ModelPackageName"):
                arn, status = _package_approval(self, container["ModelPackageName"])
                if status != "Approved":
                    raise ValidationError(
                        f"Model package {arn} has ModelApprovalStatus {status}: for versioned "
                        "models it must be Approved to deploy the model"
                    )
            elif container.get("Image"):
                check_image(container["Image"], f"CreateModel {model_name}")
        return original(
            self, model_name, execution_role_arn, primary_container, vpc_config, containers, tags
        )

    return create_model


def _job_image(operation: str, spec_key: str, image_key: str, name_key: str) -> Any:
    """A job whose image (``kwargs[spec_key][image_key]``) must exist in ECR."""

    def make(original: Any) -> Any:
        def create(self: Any, *args: Any, **kwargs: Any) -> Any:
            image = (kwargs.get(spec_key) or {}).get(image_key, "")
            check_image(image, f"{operation} {kwargs.get(name_key)}")
            return original(self, *args, **kwargs)

        return create

    return make


def _create_model_package(original: Any) -> Any:
    def create(self: Any, *args: Any, **kwargs: Any) -> Any:
        for container in (kwargs.get("inference_specification") or {}).get("Containers", []):
            check_image(container.get("Image", ""), "CreateModelPackage")
        return original(self, *args, **kwargs)

    return create


def _update_model_package(original: Any) -> Any:
    """UpdateModelPackage keeps what the call does not name (moto wipes the lineage metadata)."""

    def update(self: Any, **kwargs: Any) -> Any:
        arn = kwargs["model_package_arn"]
        package = self.model_packages.get(self.model_package_name_mapping.get(arn, arn))
        if package is not None:
            for key, attr in (
                ("model_approval_status", "model_approval_status"),
                ("approval_description", "approval_description"),
                ("customer_metadata_properties", "customer_metadata_properties"),
            ):
                if kwargs.get(key) is None:
                    kwargs[key] = getattr(package, attr, None)
        return original(self, **kwargs)

    return update


def _life_cycle(original: Any, arn_param: str) -> Any:
    """Keep ModelLifeCycle (Stage, StageStatus, StageDescription), which moto drops."""

    def handler(self: Any) -> Any:
        result = original(self)
        life = self._get_param("ModelLifeCycle")
        if life:
            arn = getattr(result, "result", {}).get("ModelPackageArn") or self._get_param(arn_param)
            backend = self.sagemaker_backend
            package = backend.model_packages.get(backend.model_package_name_mapping.get(arn, arn))
            if package is not None:
                package.model_life_cycle = dict(life)  # described as ModelLifeCycle
        return result

    return handler


def _role_from_cfn(original: Any) -> Any:
    """AWS::IAM::Role ManagedPolicyArns are attached (moto drops them: the role would hold none of
    its managed policies, and every grant in them would be missing offline)."""

    def create(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        role = original.__func__(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        _sync_managed(role, cloudformation_json.get("Properties", {}), account_id)
        return role

    return classmethod(create)


def _text(document: Any) -> str:
    return document if isinstance(document, str) else json.dumps(document)


def _sync_managed(role: Any, props: dict[str, Any], account_id: str) -> None:
    """The role holds exactly the template's ManagedPolicyArns."""
    backend = iam_models.iam_backends[account_id]["aws"]
    wanted = set(props.get("ManagedPolicyArns", []))
    for arn in set(role.managed_policies) - wanted:
        backend.detach_role_policy(arn, role.name)
    for arn in wanted - set(role.managed_policies):
        backend.attach_role_policy(arn, role.name)


def _role_update(original: Any) -> Any:
    """An AWS::IAM::Role update applies the template: trust policy, MaxSessionDuration, inline and
    managed policies (moto resets MaxSessionDuration to 3600 and keeps the old policies)."""
    del original

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        props = cloudformation_json["Properties"]
        role = original_resource
        role.assume_role_policy_document = _text(props["AssumeRolePolicyDocument"])
        role.max_session_duration = int(props.get("MaxSessionDuration", 3600))
        role.description = props.get("Description", "")
        role.policies = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies", [])}
        _sync_managed(role, props, account_id)
        return role

    return classmethod(update)


def _managed_policy_update(original: Any) -> Any:
    """An AWS::IAM::ManagedPolicy update makes its document the default version (moto keeps the
    first document forever: a grant taken out of the template would stay granted offline)."""
    del original

    def update(
        cls: Any,
        original_resource: Any,
        new_resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
    ) -> Any:
        backend = iam_models.iam_backends[account_id]["aws"]
        text = _text(cloudformation_json["Properties"]["PolicyDocument"])
        policy = original_resource
        for version in [v for v in policy.versions if not v.is_default]:
            backend.delete_policy_version(policy.arn, version.version_id)  # AWS keeps at most 5
        backend.create_policy_version(policy.arn, text, set_as_default=True)
        return policy

    return classmethod(update)


def _described(original: Any) -> Any:
    """DescribeModelPackage answers with ModelLifeCycle (moto's field list lacks it)."""

    def gen_response_object(self: Any) -> Any:
        response = original(self)
        if getattr(self, "model_life_cycle", None):
            response["ModelLifeCycle"] = self.model_life_cycle
        return response

    return gen_response_object


def install(wrap: Wrap) -> None:
    wrap(sm_models.ModelPackage, "gen_response_object", _described)
    wrap(ecr_models.ECRBackend, "put_image", _put_image)
    wrap(iam_models.Role, "create_from_cloudformation_json", _role_from_cfn)
    wrap(iam_models.Role, "update_from_cloudformation_json", _role_update)
    wrap(iam_models.ManagedPolicy, "update_from_cloudformation_json", _managed_policy_update)
    backend = sm_models.SageMakerModelBackend
    wrap(backend, "create_model", _create_model)
    wrap(
        backend,
        "create_training_job",
        _job_image(
            "CreateTrainingJob", "algorithm_specification", "TrainingImage", "training_job_name"
        ),
    )
    wrap(
        backend,
        "create_processing_job",
        _job_image("CreateProcessingJob", "app_specification", "ImageUri", "processing_job_name"),
    )
    wrap(backend, "create_model_package", _create_model_package)
    wrap(backend, "update_model_package", _update_model_package)
    response = sm_responses.SageMakerResponse
    wrap(response, "update_model_package", lambda o: _life_cycle(o, "ModelPackageArn"))
    wrap(response, "create_model_package", lambda o: _life_cycle(o, "ModelPackageName"))
