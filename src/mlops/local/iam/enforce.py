"""IAM enforced on the local AWS: every request decided as AWS would, under the caller's role.

Installed by the local runtime (moto's own check stays off). Each request to moto is mapped to what
IAM authorises (:mod:`.actions`), the caller's role session is read from moto's records
(:mod:`.principals`) and the decision is AWS's evaluation logic (:mod:`.policy`), with the resource
policies the templates attach: bucket policies as written (``aws:SecureTransport`` true, as every
AWS call is TLS) and the KMS key policy. CloudFormation changes are checked as the role it acts as;
compute runs as its service role. A denial is AWS's AccessDenied error, naming action, resource and
role. The credentials the runtime itself uses (``local``) stand for the administrator who runs the
bootstrap.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from typing import Any

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult, BaseResponse
from moto.kms.models import kms_backends
from moto.s3.exceptions import S3ClientError
from moto.s3.models import s3_backends

from mlops.local.iam import actions as act
from mlops.local.iam import policy as pol
from mlops.local.iam import principals as prin

ADMIN_KEYS = {"local"}
KEY_ID = re.compile(r"Credential=([^/,\s]+)/")
S3_IAM_NAMES = {
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListBucketMultipartUploads": "ListBucketMultipartUploads",
}


class Denied(Exception):
    """A request AWS would refuse; the text is AWS's AccessDenied message."""


class AccessDenied(ServiceException):
    code = "AccessDeniedException"


class Enforcer:
    def __init__(self, account: str, region: str) -> None:
        self.account, self.region = account, region
        self.bucket_policies: dict[str, dict[str, Any]] = {}
        self.decisions: dict[str, Counter] = {}
        self.used: dict[str, set[tuple[str, int, str]]] = {}
        self.policies: dict[str, list[pol.Policy]] = {}
        self._local = threading.local()

    # --- the decision -----------------------------------------------------------------------
    def check(self, principal: prin.Principal, accesses: list[act.Access]) -> None:
        for access in accesses:
            context = {
                **principal.context(),
                "aws:SecureTransport": True,
                "aws:RequestedRegion": self.region,
                **access.context,
            }
            resource_policies, required = self._resource_policies(access.resource)
            request = pol.Request(access.action, access.resource, principal.role_arn, context)
            decision = pol.evaluate(
                request, principal.policies, resource_policies, resource_policy_required=required
            )
            self._record(principal, access.action, decision)
            if not decision.allowed:
                raise Denied(
                    f"User: {principal.session_arn} is not authorized to perform: {access.action} "
                    f"on resource: {access.resource} because {decision.reason}"
                )

    def _resource_policies(self, resource: str) -> tuple[list[pol.Policy], bool]:
        if resource.startswith("arn:aws:s3:::"):
            bucket = resource[len("arn:aws:s3:::") :].split("/", 1)[0]
            found = self.bucket_policies.get(bucket)
            return ([pol.Policy(f"bucket-policy/{bucket}", found)] if found else []), False
        if ":kms:" in resource and ":key/" in resource:
            key = kms_backends[self.account][self.region].keys.get(resource.rsplit("/", 1)[-1])
            if key is not None:
                return [pol.Policy(f"key-policy/{key.id}", prin.document(key.policy))], True
        return [], False

    def _record(self, principal: prin.Principal, action: str, decision: pol.Decision) -> None:
        name = principal.role_arn
        self.policies[name] = principal.policies
        self.decisions.setdefault(name, Counter())["allowed" if decision.allowed else "denied"] += 1
        self.decisions[name][f"action:{action}"] += 1
        used = self.used.setdefault(name, set())
        for grant in decision.grants:
            used.add((grant.policy, grant.statement, grant.action))

    # --- who is calling ---------------------------------------------------------------------
    def principal(self, headers: Any) -> prin.Principal | None:
        """The caller's role session; None for the administrator; Denied for an unknown key."""
        match = KEY_ID.search(headers.get("Authorization", ""))
        if not match or match.group(1) in ADMIN_KEYS:
            return None
        found = prin.for_access_key(self.account, match.group(1))
        if found is None:
            raise Denied("The security token included in the request is invalid")
        return found

    @property
    def acting(self) -> prin.Principal | None:
        """The principal of the request this thread serves (CloudFormation acts as it)."""
        return getattr(self._local, "principal", None)

    def act_as(self, principal: prin.Principal | None) -> None:
        self._local.principal = principal

    # --- requests to moto -------------------------------------------------------------------
    def on_request(self, response: BaseResponse) -> None:
        principal = self.principal(response.headers)
        self.act_as(principal)
        if principal is None:
            return
        operation = response._get_action()
        params = _params(response)
        try:
            accesses = act.accesses(
                response.boto3_service_name,
                operation,
                params,
                region=self.region,
                account=self.account,
            )
        except act.UnmappedOperation as exc:
            raise Denied(f"local IAM: {exc}") from None
        self.check(principal, accesses)
        if operation in ("ExecuteChangeSet", "DeleteStack"):
            self.act_as(self._stack_actor(principal, params))

    def _stack_actor(self, caller: prin.Principal, params: dict[str, Any]) -> prin.Principal:
        """CloudFormation acts as the change set's service role, if any, else as the caller."""
        from moto.cloudformation.models import cloudformation_backends

        backend = cloudformation_backends[self.account][self.region]
        if "ChangeSetName" in params:
            name = params["ChangeSetName"]
            found = next(
                (c for k, c in backend.change_sets.items() if name in (k, c.change_set_name)),
                None,
            )
        else:  # DeleteStack: the stack's own service role, as AWS uses it
            name = params.get("StackName", "")
            found = next(
                (
                    st
                    for st in backend.stacks.values()
                    if name in (st.name, st.stack_id) and st.status != "DELETE_COMPLETE"
                ),
                None,
            )
        role_arn = getattr(found, "role_arn", None) if found else None
        if found is not None and not role_arn and "ChangeSetName" not in params:
            # moto keeps RoleARN on the change set, not on the stack it created
            role_arn = next(
                (
                    c.role_arn
                    for c in backend.change_sets.values()
                    if c.stack_id == found.stack_id and c.role_arn
                ),
                None,
            )
        if not role_arn:
            return caller
        return self.service_principal(role_arn, "cloudformation")

    def service_principal(self, role_arn: str, service: str) -> prin.Principal:
        """The role a service acts as, if its trust policy lets the service assume it."""
        try:
            found = prin.role(self.account, role_arn)
        except Exception:
            raise Denied(f"{service} cannot assume role {role_arn}: it does not exist") from None
        decision = prin.trust_decision(
            found,
            "sts:AssumeRole",
            "Service",
            f"{service}.amazonaws.com",
            {"aws:SourceAccount": self.account},
        )
        if not decision.allowed:
            raise Denied(
                f"{service}.amazonaws.com cannot assume role {role_arn}: its trust policy "
                f"does not allow it ({decision.reason})"
            )
        session = f"arn:aws:sts::{self.account}:assumed-role/{found.name}/{service}"
        return prin.Principal(
            role_arn, session, prin.role_policies(self.account, found), prin.role_tags(found)
        )

    def on_s3(self, response: Any, bucket: str | None, key: str | None) -> None:
        principal = self.principal(response.headers)
        if principal is None:
            return
        name = response.data.get("Action", "")
        action = f"s3:{S3_IAM_NAMES.get(name, name)}"
        if not bucket:
            self.check(principal, [act.Access(action, "*", {})])
            return
        resource = f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")
        context: dict[str, Any] = {}
        if action == "s3:ListBucket":
            prefix = response.querystring.get("prefix", [""])
            context["s3:prefix"] = prefix[0] if isinstance(prefix, list) else prefix
        self.check(
            principal, [act.Access(action, resource, context), *self._s3_kms(bucket, key, action)]
        )

    def _s3_kms(self, bucket: str, key: str | None, action: str) -> list[act.Access]:
        """SSE-KMS objects need the key too: GenerateDataKey to write, Decrypt to read
        ("Using server-side encryption with AWS KMS keys", Amazon S3 User Guide)."""
        backend = s3_backends[self.account]["aws"]
        # S3 calls KMS on the caller's behalf: kms:ViaService names S3 and kms:CallerAccount the
        # caller ("kms:ViaService", AWS KMS Developer Guide, condition keys for AWS KMS:
        # https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service)
        via = {
            "kms:ViaService": f"s3.{self.region}.amazonaws.com",
            "kms:CallerAccount": self.account,
        }
        if action == "s3:PutObject":
            rules = (backend.buckets.get(bucket) and backend.buckets[bucket].encryption) or {}
            key_id = _default_kms_key(rules)
            return [act.Access("kms:GenerateDataKey", self._key_arn(key_id), via)] if key_id else []
        if action == "s3:GetObject" and key:
            try:
                stored = backend.get_object(bucket, key)
            except Exception:
                return []
            key_id = getattr(stored, "kms_key_id", None) if stored else None
            return [act.Access("kms:Decrypt", self._key_arn(key_id), via)] if key_id else []
        return []

    def _key_arn(self, key_id: str) -> str:
        if key_id.startswith("arn:"):
            return key_id
        return f"arn:aws:kms:{self.region}:{self.account}:key/{key_id}"

    # --- the report -------------------------------------------------------------------------
    def report(self) -> list[str]:
        """Per role: decisions, the actions used, and the grants never used (least privilege)."""
        lines = []
        for role_arn, counts in sorted(self.decisions.items()):
            used_actions = sorted(k[7:] for k in counts if k.startswith("action:"))
            lines.append(
                f"iam: {role_arn.rsplit('/', 1)[-1]}: {counts['allowed']} allowed, "
                f"{counts['denied']} denied; used {', '.join(used_actions)}"
            )
            used = self.used.get(role_arn, set())
            unused = [
                f"{p.name}#{i}:{a}"
                for p in self.policies.get(role_arn, [])
                for i, statement in pol.statements(p)
                if statement.get("Effect") == "Allow"
                for a in pol.action_patterns(statement)
                if (p.name, i, a) not in used
            ]
            if unused:
                lines.append(f"iam:   never used: {', '.join(unused)}")
        return lines


def _default_kms_key(rules: Any) -> str:
    found = (rules or {}).get("Rule", []) if isinstance(rules, dict) else []
    for rule in [found] if isinstance(found, dict) else found:
        default = rule.get("ApplyServerSideEncryptionByDefault", {})
        if default.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse"):
            return default.get("KMSMasterKeyID", "")
    return ""


def _params(response: BaseResponse) -> dict[str, Any]:
    """The request's parameters in botocore's input shape, whatever the protocol."""
    params = getattr(response, "params", None)
    if not isinstance(params, dict) or not params:
        try:
            response.parse_parameters(response.normalized_request)
            params = response.params
        except Exception:
            params = {}
    return dict(params or {})


def deny_response(response: BaseResponse, message: str) -> Any:
    """AWS's AccessDenied in the response's own protocol."""
    error = AccessDenied(message)
    if response.boto3_service_name in ("cloudformation", "iam", "sts", "cloudwatch"):
        error.code = "AccessDenied"
    return response.serialized(ActionResult(error))


def s3_denied(message: str) -> S3ClientError:
    return S3ClientError("AccessDenied", message)
