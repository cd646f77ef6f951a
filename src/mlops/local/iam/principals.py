"""Who is calling, and what they hold: roles read from moto's IAM records, trust policies applied.

moto keeps the records (roles, inline and managed policies, tags, assumed-role sessions); the
decisions are made here with AWS's evaluation logic (:mod:`mlops.local.iam.policy`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from moto.iam.models import iam_backends
from moto.sts.models import sts_backends

from mlops.local.iam import policy as pol

PARTITION = "aws"


@dataclass
class Principal:
    """A role session: the role's ARN, its policies and tags (for ${aws:PrincipalTag/...})."""

    role_arn: str
    session_arn: str
    policies: list[pol.Policy]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]

    def context(self) -> dict[str, Any]:
        found: dict[str, Any] = {f"aws:PrincipalTag/{k}": v for k, v in self.tags.items()}
        found["aws:PrincipalArn"] = self.role_arn
        found["aws:PrincipalAccount"] = self.role_arn.split(":")[4]
        found["aws:PrincipalType"] = "AssumedRole"
        return found


def document(raw: Any) -> dict[str, Any]:
    """moto stores documents as dicts, JSON or URL-encoded JSON: one shape out."""
    if isinstance(raw, dict):
        return raw
    text = unquote(raw) if raw.lstrip().startswith("%") else raw
    return json.loads(text)


def _iam(account: str) -> Any:
    return iam_backends[account][PARTITION]


def role(account: str, role_arn: str) -> Any:
    return _iam(account).get_role_by_arn(role_arn)


def role_policies(account: str, found: Any) -> list[pol.Policy]:
    out = [
        pol.Policy(f"{found.name}/{name}", document(doc)) for name, doc in found.policies.items()
    ]
    for arn, managed in found.managed_policies.items():
        version = next(v for v in managed.versions if v.is_default)
        out.append(pol.Policy(f"{found.name}/{arn.rsplit('/', 1)[-1]}", document(version.document)))
    return out


def role_tags(found: Any) -> dict[str, str]:
    tags = found.tags or {}
    items = tags.values() if isinstance(tags, dict) else tags
    return {t["Key"]: t["Value"] for t in items}


def for_access_key(account: str, access_key_id: str) -> Principal | None:
    """The role session behind temporary credentials; None when the key is no role session."""
    session = sts_backends[account]["global"].get_assumed_role_from_access_key(access_key_id)
    if session is None:
        return None
    found = role(account, session.role_arn)
    return Principal(session.role_arn, session.arn, role_policies(account, found), role_tags(found))


def _as_identity_statement(statement: dict[str, Any]) -> dict[str, Any]:
    """A trust statement with its principal stripped, so the evaluator can test its Condition."""
    out = {k: v for k, v in statement.items() if k not in ("Principal", "NotPrincipal")}
    out["Resource"] = "*"
    return out


def trust_decision(
    found: Any, action: str, principal_kind: str, principal: str, context: dict[str, Any]
) -> pol.Decision:
    """Does the role's trust policy let ``principal`` (Federated / Service / AWS) take ``action``?

    Statements naming another principal do not apply; conditions and explicit denies do.
    """
    trust = document(found.assume_role_policy_document)
    statements = trust.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    applicable = []
    for statement in statements:
        named = statement.get("Principal", {})
        values = named.get(principal_kind, []) if isinstance(named, dict) else [named]
        values = [values] if isinstance(values, str) else values
        if principal in values or "*" in values:
            applicable.append(_as_identity_statement(statement))
    trust_policy = pol.Policy(f"{found.name}/trust-policy", {"Statement": applicable})
    request = pol.Request(action=action, resource=found.arn, principal=principal, context=context)
    return pol.evaluate(request, [trust_policy])


def oidc_provider_audiences(account: str, provider_arn: str) -> list[str] | None:
    """The client ids of an IAM OIDC provider, or None when the account has no such provider."""
    provider = _iam(account).open_id_providers.get(provider_arn)
    return None if provider is None else list(provider.client_id_list)
