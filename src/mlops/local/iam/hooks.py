"""Where the enforcement enters moto: its request dispatch, S3's authorisation step, STS's web
identity call and CloudFormation's resource handlers. Patched through moto_gaps' registry, so
``moto_gaps.uninstall`` restores moto as it was."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from moto.cloudformation import parsing as cfn_parsing
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.responses import BaseResponse
from moto.sts import responses as sts_responses
from moto.sts.exceptions import STSClientError

from mlops.local import oidc
from mlops.local.iam import cfn_permissions as cfnp
from mlops.local.iam import principals as prin
from mlops.local.iam.enforce import Denied, Enforcer, deny_response, s3_denied

Wrap = Callable[[Any, str, Callable[[Any], Any]], None]


def _call_action(enforcer: Enforcer) -> Callable[[Any], Any]:
    def make(original: Any) -> Any:
        def call_action(self: BaseResponse) -> Any:
            try:
                enforcer.on_request(self)
            except Denied as exc:
                return deny_response(self, str(exc))
            except Exception as exc:  # fail closed, and say why
                return deny_response(
                    self, f"local IAM could not decide: {type(exc).__name__}: {exc}"
                )
            return original(self)

        return call_action

    return make


def _s3(enforcer: Enforcer) -> Callable[[Any], Any]:
    def make(_original: Any) -> Any:
        def authorize(
            self: Any, bucket_name: str | None = None, key_name: str | None = None
        ) -> None:
            try:
                enforcer.on_s3(self, bucket_name, key_name)
            except Denied as exc:
                raise s3_denied(str(exc)) from None
            except Exception as exc:  # fail closed, and say why
                raise s3_denied(
                    f"local IAM could not decide: {type(exc).__name__}: {exc}"
                ) from None

        return authorize

    return make


def _web_identity(enforcer: Enforcer, tokens: oidc.TokenService) -> Callable[[Any], Any]:
    """AssumeRoleWithWebIdentity: a valid token, a provider the account has, the role's trust
    policy on the token's claims, and DurationSeconds within the role's MaxSessionDuration
    (AWS STS API Reference, AssumeRoleWithWebIdentity: DurationSeconds; "Create a role for OpenID
    Connect federation", IAM User Guide)."""

    def make(original: Any) -> Any:
        def assume(self: Any) -> Any:
            role_arn = self._get_param("RoleArn")
            try:
                claims = tokens.verify(self._get_param("WebIdentityToken") or "")
            except oidc.TokenError as exc:
                raise STSClientError("InvalidIdentityToken", str(exc)) from None
            try:
                found = prin.role(enforcer.account, role_arn)
            except Exception:
                raise STSClientError(
                    "AccessDenied",
                    f"Not authorized to perform sts:AssumeRoleWithWebIdentity: no role {role_arn}",
                ) from None
            provider = f"arn:aws:iam::{enforcer.account}:oidc-provider/{oidc.HOST}"
            audiences = prin.oidc_provider_audiences(enforcer.account, provider)
            if audiences is None or claims.get("aud") not in audiences:
                raise STSClientError(
                    "InvalidIdentityToken",
                    f"No OpenIDConnect provider found "
                    f"in your account for {oidc.ISSUER} with audience {claims.get('aud')}",
                )
            decision = prin.trust_decision(
                found,
                "sts:AssumeRoleWithWebIdentity",
                "Federated",
                provider,
                oidc.condition_context(claims),
            )
            if not decision.allowed:
                raise STSClientError(
                    "AccessDenied",
                    "Not authorized to perform "
                    f"sts:AssumeRoleWithWebIdentity on {role_arn} for subject "
                    f"{claims.get('sub')} ({decision.reason})",
                )
            duration = int(self._get_param("DurationSeconds") or 3600)
            if duration > int(found.max_session_duration or 3600):
                raise STSClientError(
                    "ValidationError",
                    "The requested DurationSeconds exceeds the "
                    "MaxSessionDuration set for this role.",
                )
            return original(self)

        return assume

    return make


def _resource_change(enforcer: Enforcer, kind: str) -> Callable[[Any], Any]:
    """Check each resource change as the principal CloudFormation acts as (the caller, or the
    stack's service role); a denial fails that resource, as on AWS."""
    from mlops.local.moto_gaps import ResourceFailed

    def check(
        logical_id: str, resource_type: str, props: dict[str, Any], physical: str, region: str
    ) -> None:
        actor = enforcer.acting
        if actor is None:
            return
        change = cfnp.ResourceChange(logical_id, resource_type, kind, props, physical)
        try:
            enforcer.check(
                actor, cfnp.accesses_for_change(change, region=region, account=enforcer.account)
            )
        except (Denied, cfnp.UnmappedOperation) as exc:
            raise ResourceFailed(logical_id, resource_type, str(exc)) from None

    def make(original: Any) -> Any:
        signature = inspect.signature(original)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs).arguments
            resource_json, region = bound["resource_json"], bound["region_name"]
            if kind == "delete":
                name = bound["resource_name"]  # its properties are unresolved: use the name
                check(name, resource_json["Type"], {}, name, region)
                return original(*args, **kwargs)
            logical_id, resources_map = bound["logical_id"], bound["resources_map"]
            condition = resource_json.get("Condition")
            if not (condition and not resources_map.lazy_condition_map[condition]):
                parsed = cfn_parsing.parse_resource_and_generate_name(
                    logical_id, resource_json, resources_map
                )
                if parsed:
                    _, resolved, name = parsed
                    check(
                        logical_id,
                        resource_json["Type"],
                        resolved.get("Properties", {}),
                        name,
                        region,
                    )
            return original(*args, **kwargs)

        return wrapped

    return make


def install(enforcer: Enforcer, tokens: oidc.TokenService, wrap: Wrap) -> None:
    wrap(BaseResponse, "call_action", _call_action(enforcer))
    wrap(ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", _s3(enforcer))
    wrap(
        sts_responses.TokenResponse,
        "assume_role_with_web_identity",
        _web_identity(enforcer, tokens),
    )
    wrap(cfn_parsing, "parse_and_create_resource", _resource_change(enforcer, "create"))
    wrap(cfn_parsing, "parse_and_update_resource", _resource_change(enforcer, "update"))
    wrap(cfn_parsing, "parse_and_delete_resource", _resource_change(enforcer, "delete"))
