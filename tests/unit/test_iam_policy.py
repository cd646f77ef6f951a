"""AWS's policy evaluation for the local IAM: each rule with a case it allows and one it denies."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from mlops.local.iam.policy import (
    Decision,
    Grant,
    Policy,
    PolicyError,
    Request,
    action_patterns,
    evaluate,
    statements,
)

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-deploy"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/mlops-build"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
BUCKET = "arn:aws:s3:::mlops-artifacts"
KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str] = "*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str | list[str], resource: str | list[str] = "*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def identity(*statements: dict, name: str = "role/mlops-deploy/inline/deploy") -> Policy:
    return Policy(name, doc(*statements))


def decide(
    action: str,
    resource: str = "*",
    policies: tuple[Policy, ...] | list[Policy] = (),
    resource_policies: tuple[Policy, ...] | list[Policy] = (),
    principal: str = ROLE,
    required: bool = False,
    **context,
) -> Decision:
    request = Request(action, resource, principal, context)
    return evaluate(request, policies, resource_policies, resource_policy_required=required)


def allowed(action: str, resource: str, *statements: dict, **context) -> bool:
    return decide(action, resource, [identity(*statements)], **context).allowed


def condition(operator: str, key: str, values, **context) -> bool:
    """Does an Allow with one condition allow s3:GetObject under ``context``?"""
    statement = allow("s3:GetObject", Condition={operator: {key: values}})
    return allowed("s3:GetObject", f"{BUCKET}/k", statement, **context)


# --- the decision -------------------------------------------------------------------------------
def test_no_policy_is_the_implicit_deny() -> None:
    decision = decide("s3:GetObject", f"{BUCKET}/k")
    assert not decision.allowed and decision.grants == ()
    assert decision.reason == f"no identity-based policy allows s3:GetObject on {BUCKET}/k"


def test_identity_allow_allows() -> None:
    decision = decide("s3:GetObject", f"{BUCKET}/k", [identity(allow("s3:GetObject"))])
    assert decision == Decision(
        True, "allowed", (Grant("role/mlops-deploy/inline/deploy", 0, "", "s3:GetObject", "*"),)
    )


def test_explicit_deny_beats_allow_in_identity_policies() -> None:
    allowing = identity(allow("s3:*"), name="a")
    denying = Policy("b", doc(allow("s3:PutObject"), deny("s3:DeleteObject", Sid="NoDelete")))
    assert decide("s3:PutObject", f"{BUCKET}/k", [allowing, denying]).allowed
    decision = decide("s3:DeleteObject", f"{BUCKET}/k", [allowing, denying])
    assert not decision.allowed and decision.grants == ()
    assert decision.reason == "explicit deny in b statement 1 (NoDelete)"


def test_explicit_deny_in_a_resource_policy_beats_an_identity_allow() -> None:
    bucket = Policy("bucket-policy/b", doc(deny("s3:PutObject", f"{BUCKET}/*", Principal="*")))
    ident = [identity(allow("s3:*", f"{BUCKET}/*"))]
    assert decide("s3:GetObject", f"{BUCKET}/k", ident, [bucket]).allowed
    decision = decide("s3:PutObject", f"{BUCKET}/k", ident, [bucket])
    assert not decision.allowed
    assert decision.reason == "explicit deny in bucket-policy/b statement 0"


def test_explicit_deny_in_an_identity_policy_beats_a_resource_policy_allow() -> None:
    bucket = Policy("bucket", doc(allow("s3:*", f"{BUCKET}/*", Principal={"AWS": ROLE})))
    ident = [identity(deny("s3:PutObject"))]
    assert decide("s3:GetObject", f"{BUCKET}/k", ident, [bucket]).allowed
    assert not decide("s3:PutObject", f"{BUCKET}/k", ident, [bucket]).allowed


# --- actions and resources ----------------------------------------------------------------------
def test_action_wildcards_and_service_prefix() -> None:
    assert allowed("s3:GetObject", "*", allow("s3:Get*"))
    assert not allowed("s3:PutObject", "*", allow("s3:Get*"))
    assert allowed("sagemaker:CreateModel", "*", allow("sagemaker:*"))
    assert not allowed("sagemaker-geospatial:ListRasterDataCollections", "*", allow("sagemaker:*"))
    assert allowed("ecr:BatchGetImage", "*", allow("*"))
    assert allowed("s3:GetObject", "*", allow("s3:Get?bject"))
    assert not allowed("s3:GetObjectAcl", "*", allow("s3:Get?bject"))


def test_actions_match_case_insensitively() -> None:
    assert allowed("S3:GETOBJECT", "*", allow("s3:getObject"))
    assert allowed("sagemaker:createtrainingjob", "*", allow("SageMaker:CreateTraining*"))
    assert not allowed("sagemaker:createmodel", "*", allow("SageMaker:CreateTraining*"))


def test_resources_match_case_sensitively() -> None:
    assert allowed("s3:GetObject", f"{BUCKET}/Model.tar.gz", allow("s3:GetObject", f"{BUCKET}/M*"))
    assert not allowed(
        "s3:GetObject", f"{BUCKET}/model.tar.gz", allow("s3:GetObject", f"{BUCKET}/M*")
    )


def test_resource_wildcards_cross_colons_and_slashes_and_question_mark_is_one_char() -> None:
    anything = "arn:aws:sagemaker:*:123456789012:*"
    assert allowed(
        "sagemaker:X", "arn:aws:sagemaker:eu-west-1:123456789012:model/a/b", allow("*", anything)
    )
    assert not allowed(
        "sagemaker:X", "arn:aws:sagemaker:eu-west-1:999999999999:model/a", allow("*", anything)
    )
    assert allowed("s3:GetObject", f"{BUCKET}/run-1", allow("s3:GetObject", f"{BUCKET}/run-?"))
    assert not allowed("s3:GetObject", f"{BUCKET}/run-10", allow("s3:GetObject", f"{BUCKET}/run-?"))


def test_resource_patterns_are_never_regular_expressions() -> None:
    assert allowed("s3:ListBucket", "arn:aws:s3:::a.b", allow("s3:ListBucket", "arn:aws:s3:::a.b"))
    assert not allowed(
        "s3:ListBucket", "arn:aws:s3:::axb", allow("s3:ListBucket", "arn:aws:s3:::a.b")
    )
    assert not allowed(
        "s3:ListBucket", "arn:aws:s3:::aab", allow("s3:ListBucket", "arn:aws:s3:::a+b")
    )
    assert allowed("s3:ListBucket", "arn:aws:s3:::(x)", allow("s3:ListBucket", "arn:aws:s3:::(x)"))
    assert not allowed(
        "s3:ListBucket", "arn:aws:s3:::x", allow("s3:ListBucket", "arn:aws:s3:::(x)")
    )


def test_a_resource_list_matches_any_entry() -> None:
    statement = allow("s3:GetObject", [f"{BUCKET}/a/*", f"{BUCKET}/b/*"])
    assert allowed("s3:GetObject", f"{BUCKET}/b/k", statement)
    assert not allowed("s3:GetObject", f"{BUCKET}/c/k", statement)


def test_star_resource_for_actions_without_resource_level_permissions() -> None:
    assert allowed("ecr:GetAuthorizationToken", "*", allow("ecr:GetAuthorizationToken", "*"))
    assert not allowed("ecr:GetAuthorizationToken", "*", allow("ecr:*", "arn:aws:ecr:*"))


def test_not_action() -> None:
    statement = {
        "Effect": "Allow",
        "NotAction": ["iam:*", "kms:ScheduleKeyDeletion"],
        "Resource": "*",
    }
    assert allowed("s3:GetObject", "*", statement)
    assert not allowed("iam:CreateRole", "*", statement)
    assert not allowed("KMS:scheduleKeyDeletion", "*", statement)
    guard = {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"}
    assert allowed("s3:GetObject", "*", allow("*"), guard)
    assert not allowed("s3:PutObject", "*", allow("*"), guard)


def test_not_resource() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "NotResource": f"{BUCKET}/secret/*"}
    assert allowed("s3:GetObject", f"{BUCKET}/public/k", statement)
    assert not allowed("s3:GetObject", f"{BUCKET}/secret/k", statement)


def test_action_patterns_and_statements_for_the_unused_grant_report() -> None:
    policy = Policy("p", {"Statement": allow("s3:GetObject")})
    assert statements(policy) == [(0, allow("s3:GetObject"))]
    listed = Policy("q", json.dumps(doc(allow(["a:B", "c:D"]), deny("e:F"))))
    assert [i for i, _ in statements(listed)] == [0, 1]
    assert action_patterns(allow(["a:B", "c:D"])) == ["a:B", "c:D"]
    assert action_patterns(allow("a:B")) == ["a:B"]
    assert action_patterns({"Effect": "Allow", "NotAction": "a:B", "Resource": "*"}) == []


def test_grants_name_policy_statement_and_matched_patterns() -> None:
    policies = [
        Policy(
            "p1",
            doc(
                allow("s3:PutObject"),
                allow(["s3:List*", "s3:Get*"], [f"{BUCKET}/x/*", f"{BUCKET}/*"], Sid="Read"),
            ),
        ),
        Policy("p2", doc(allow("s3:GetObject", f"{BUCKET}/*"))),
        Policy("p3", doc(allow("s3:GetObject", "arn:aws:s3:::other/*"))),
    ]
    decision = decide("s3:GetObject", f"{BUCKET}/y/k", policies)
    assert decision.allowed
    assert decision.grants == (
        Grant("p1", 1, "Read", "s3:Get*", f"{BUCKET}/*"),
        Grant("p2", 0, "", "s3:GetObject", f"{BUCKET}/*"),
    )


def test_grants_report_not_action_and_resource_policy_statements() -> None:
    not_action = {"Effect": "Allow", "NotAction": ["iam:*"], "NotResource": "arn:aws:s3:::x"}
    bucket = Policy("bucket", doc(allow("s3:GetObject", Principal={"AWS": ROLE})))
    decision = decide("s3:GetObject", f"{BUCKET}/k", [identity(not_action, name="n")], [bucket])
    assert decision.grants == (
        Grant("n", 0, "", "NotAction:iam:*", "NotResource:arn:aws:s3:::x"),
        Grant("bucket", 0, "", "s3:GetObject", "*"),
    )


# --- policy variables ---------------------------------------------------------------------------
STAGE_SCOPED = allow(
    "cloudformation:UpdateStack",
    "arn:aws:cloudformation:eu-west-1:123456789012:stack/mlops-endpoint-${aws:PrincipalTag/Stage}/*",
)


def stack(stage: str) -> str:
    return f"arn:aws:cloudformation:eu-west-1:123456789012:stack/mlops-endpoint-{stage}/abc"


def test_principal_tag_variable_scopes_resources_to_the_tagged_stage() -> None:
    tagged = {"aws:PrincipalTag/Stage": "dev"}
    assert allowed("cloudformation:UpdateStack", stack("dev"), STAGE_SCOPED, **tagged)
    assert not allowed("cloudformation:UpdateStack", stack("prod"), STAGE_SCOPED, **tagged)


def test_principal_tag_variable_without_the_tag_does_not_match() -> None:
    assert not allowed("cloudformation:UpdateStack", stack("dev"), STAGE_SCOPED)
    assert not allowed("cloudformation:UpdateStack", stack(""), STAGE_SCOPED)
    assert not allowed(
        "cloudformation:UpdateStack", stack("${aws:PrincipalTag/Stage}"), STAGE_SCOPED
    )


def test_variable_keys_are_case_insensitive_and_values_are_literal() -> None:
    statement = allow("s3:GetObject", f"{BUCKET}/home/${{aws:username}}/*")
    assert allowed("s3:GetObject", f"{BUCKET}/home/alice/k", statement, **{"AWS:UserName": "alice"})
    assert not allowed(
        "s3:GetObject", f"{BUCKET}/home/bob/k", statement, **{"aws:username": "alice"}
    )
    # a value with a wildcard in it is no wildcard
    assert allowed("s3:GetObject", f"{BUCKET}/home/a*/k", statement, **{"aws:username": "a*"})
    assert not allowed(
        "s3:GetObject", f"{BUCKET}/home/alice/k", statement, **{"aws:username": "a*"}
    )


def test_escaped_star_is_a_literal_star() -> None:
    statement = allow("s3:GetObject", f"{BUCKET}/${{*}}/k")
    assert allowed("s3:GetObject", f"{BUCKET}/*/k", statement)
    assert not allowed("s3:GetObject", f"{BUCKET}/anything/k", statement)
    assert allowed(
        "s3:GetObject", f"{BUCKET}/?$/k", allow("s3:GetObject", f"{BUCKET}/${{?}}${{$}}/k")
    )
    assert not allowed(
        "s3:GetObject", f"{BUCKET}/x$/k", allow("s3:GetObject", f"{BUCKET}/${{?}}${{$}}/k")
    )


def test_variable_default_value() -> None:
    statement = allow("s3:GetObject", f"{BUCKET}/${{aws:PrincipalTag/team, 'shared'}}/*")
    assert allowed("s3:GetObject", f"{BUCKET}/shared/k", statement)
    assert not allowed("s3:GetObject", f"{BUCKET}/ml/k", statement)
    assert allowed("s3:GetObject", f"{BUCKET}/ml/k", statement, **{"aws:PrincipalTag/team": "ml"})


def test_variables_in_condition_values() -> None:
    statement = allow(
        "sagemaker:CreateModel",
        Condition={"StringEquals": {"aws:ResourceTag/Stage": "${aws:PrincipalTag/Stage}"}},
    )
    ok = {"aws:ResourceTag/Stage": "dev", "aws:PrincipalTag/Stage": "dev"}
    assert allowed("sagemaker:CreateModel", "*", statement, **ok)
    assert not allowed(
        "sagemaker:CreateModel", "*", statement, **{**ok, "aws:ResourceTag/Stage": "prod"}
    )
    assert not allowed("sagemaker:CreateModel", "*", statement, **{"aws:ResourceTag/Stage": "dev"})


def test_version_2008_reads_variables_as_literal_text() -> None:
    policy = Policy("old", {"Version": "2008-10-17", "Statement": [STAGE_SCOPED]})
    tagged = {"aws:PrincipalTag/Stage": "dev"}
    assert not decide("cloudformation:UpdateStack", stack("dev"), [policy], **tagged).allowed
    literal = stack("${aws:PrincipalTag/Stage}")
    assert decide("cloudformation:UpdateStack", literal, [policy], **tagged).allowed


# --- conditions ---------------------------------------------------------------------------------
SUB = "token.actions.githubusercontent.com:sub"


def test_string_equals_with_keys_containing_colons() -> None:
    value = "repo:acme/mlops:environment:prod"
    assert condition("StringEquals", SUB, value, **{SUB: value})
    assert not condition("StringEquals", SUB, value, **{SUB: "repo:acme/mlops:ref:refs/heads/x"})
    assert not condition("StringEquals", SUB, value)


def test_condition_keys_are_case_insensitive_but_string_values_are_not() -> None:
    assert condition(
        "StringEquals", "AWS:RequestedRegion", "eu-west-1", **{"aws:requestedregion": "eu-west-1"}
    )
    assert not condition(
        "StringEquals", "aws:RequestedRegion", "eu-west-1", **{"aws:RequestedRegion": "EU-WEST-1"}
    )
    assert condition(
        "StringEqualsIgnoreCase",
        "aws:RequestedRegion",
        "eu-west-1",
        **{"aws:RequestedRegion": "EU-WEST-1"},
    )
    assert not condition(
        "StringEqualsIgnoreCase",
        "aws:RequestedRegion",
        "eu-west-1",
        **{"aws:RequestedRegion": "us-east-1"},
    )


def test_string_not_equals_ignore_case() -> None:
    assert condition("StringNotEqualsIgnoreCase", "k", ["A", "B"], k="c")
    assert not condition("StringNotEqualsIgnoreCase", "k", ["A", "B"], k="b")


def test_string_like_with_a_list_of_patterns() -> None:
    patterns = ["repo:acme/mlops:ref:refs/heads/main", "repo:acme/mlops:environment:*"]
    assert condition("StringLike", SUB, patterns, **{SUB: "repo:acme/mlops:environment:dev"})
    assert condition("StringLike", SUB, patterns, **{SUB: "repo:acme/mlops:ref:refs/heads/main"})
    assert not condition("StringLike", SUB, patterns, **{SUB: "repo:acme/mlops:ref:refs/heads/dev"})
    assert not condition("StringLike", SUB, patterns, **{SUB: "repo:evil/mlops:environment:dev"})


def test_string_like_is_no_regular_expression() -> None:
    assert condition("StringLike", "k", "a.b?", k="a.bc")
    assert not condition("StringLike", "k", "a.b?", k="axbc")


def test_string_not_like() -> None:
    assert condition("StringNotLike", "k", ["dev-*", "test-*"], k="prod-1")
    assert not condition("StringNotLike", "k", ["dev-*", "test-*"], k="test-1")


def test_bool_secure_transport() -> None:
    assert condition("Bool", "aws:SecureTransport", "true", **{"aws:SecureTransport": True})
    assert condition("Bool", "aws:SecureTransport", "TRUE", **{"aws:SecureTransport": "true"})
    assert condition("Bool", "aws:SecureTransport", True, **{"aws:SecureTransport": "True"})
    assert not condition("Bool", "aws:SecureTransport", "true", **{"aws:SecureTransport": False})
    assert not condition("Bool", "aws:SecureTransport", "true")


def test_if_exists_holds_when_the_key_is_absent() -> None:
    assert condition("StringEqualsIfExists", "aws:ResourceTag/Stage", "dev")
    assert condition(
        "StringEqualsIfExists", "aws:ResourceTag/Stage", "dev", **{"aws:ResourceTag/Stage": "dev"}
    )
    assert not condition(
        "StringEqualsIfExists", "aws:ResourceTag/Stage", "dev", **{"aws:ResourceTag/Stage": "prod"}
    )
    assert not condition("StringEquals", "aws:ResourceTag/Stage", "dev")
    assert condition("BoolIfExists", "aws:MultiFactorAuthPresent", "true")
    assert not condition(
        "BoolIfExists",
        "aws:MultiFactorAuthPresent",
        "true",
        **{"aws:MultiFactorAuthPresent": False},
    )


def test_negated_operators_hold_when_the_key_is_absent() -> None:
    for operator in (
        "StringNotEquals",
        "StringNotLike",
        "ArnNotLike",
        "ArnNotEquals",
        "NumericNotEquals",
        "StringNotEqualsIgnoreCase",
        "DateNotEquals",
        "NotIpAddress",
    ):
        assert condition(operator, "absent:key", "1"), operator
    assert condition("StringNotEquals", "k", "prod", k="dev")
    assert not condition("StringNotEquals", "k", "prod", k="prod")
    assert not condition("StringNotEquals", "k", ["dev", "prod"], k="prod")
    assert not condition(
        "ArnNotLike", "aws:SourceArn", "arn:aws:s3:::x*", **{"aws:SourceArn": "arn:aws:s3:::xy"}
    )


def test_for_any_value() -> None:
    key = "aws:TagKeys"
    assert condition(
        "ForAnyValue:StringEquals", key, ["Stage", "Owner"], **{key: ["Cost", "Stage"]}
    )
    assert not condition("ForAnyValue:StringEquals", key, ["Stage", "Owner"], **{key: ["Cost"]})
    assert not condition("ForAnyValue:StringEquals", key, ["Stage"])
    assert not condition("ForAnyValue:StringEquals", key, ["Stage"], **{key: []})
    assert condition("ForAnyValue:StringNotEquals", key, ["Stage"], **{key: ["Stage", "Cost"]})
    assert not condition("ForAnyValue:StringNotEquals", key, ["Stage"], **{key: ["Stage"]})
    assert not condition("ForAnyValue:StringNotEquals", key, ["Stage"])


def test_for_all_values() -> None:
    key = "aws:TagKeys"
    assert condition(
        "ForAllValues:StringEquals", key, ["Stage", "Owner"], **{key: ["Owner", "Stage"]}
    )
    assert not condition(
        "ForAllValues:StringEquals", key, ["Stage", "Owner"], **{key: ["Owner", "Cost"]}
    )
    assert condition("ForAllValues:StringEquals", key, ["Stage"])  # no values: holds vacuously
    assert condition("ForAllValues:StringLike", key, ["mlops:*"], **{key: ["mlops:a", "mlops:b"]})
    assert not condition("ForAllValues:StringLike", key, ["mlops:*"], **{key: ["mlops:a", "b"]})


def test_a_list_value_without_a_qualifier_matches_on_any_value() -> None:
    assert condition("StringEquals", "k", "b", k=["a", "b"])
    assert not condition("StringEquals", "k", "c", k=["a", "b"])
    assert not condition("StringNotEquals", "k", "b", k=["a", "b"])


def test_and_across_operators_and_keys_or_across_values() -> None:
    statement = allow(
        "s3:GetObject",
        Condition={
            "StringEquals": {"k1": ["a", "b"], "k2": "c"},
            "Bool": {"aws:SecureTransport": "true"},
        },
    )
    ok = {"k1": "b", "k2": "c", "aws:SecureTransport": True}
    assert allowed("s3:GetObject", "*", statement, **ok)
    assert not allowed("s3:GetObject", "*", statement, **{**ok, "k2": "x"})
    assert not allowed("s3:GetObject", "*", statement, **{**ok, "aws:SecureTransport": False})
    assert not allowed("s3:GetObject", "*", statement, **{**ok, "k1": "z"})


def test_pass_role_only_to_the_named_service() -> None:
    statement = allow(
        "iam:PassRole",
        OTHER_ROLE,
        Condition={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    )
    assert allowed(
        "iam:PassRole", OTHER_ROLE, statement, **{"iam:PassedToService": "sagemaker.amazonaws.com"}
    )
    assert not allowed(
        "iam:PassRole", OTHER_ROLE, statement, **{"iam:PassedToService": "ec2.amazonaws.com"}
    )
    assert not allowed("iam:PassRole", OTHER_ROLE, statement)
    assert not allowed(
        "iam:PassRole", ROLE, statement, **{"iam:PassedToService": "sagemaker.amazonaws.com"}
    )


def test_arn_like_and_arn_equals() -> None:
    key, arn = "aws:SourceArn", f"arn:aws:sagemaker:eu-west-1:{ACCOUNT}:training-job/a.b"
    assert condition("ArnLike", key, f"arn:aws:sagemaker:*:{ACCOUNT}:training-job/*", **{key: arn})
    assert not condition("ArnLike", key, "arn:aws:sagemaker:*:999999999999:*", **{key: arn})
    assert condition("ArnEquals", key, arn, **{key: arn})
    assert not condition("ArnEquals", key, arn, **{key: arn.replace("a.b", "axb")})
    assert not condition("ArnLike", key, "*", **{key: "not-an-arn"})
    assert condition("ArnNotEquals", key, "arn:aws:s3:::x", **{key: arn})


def test_null() -> None:
    assert condition("Null", "aws:ResourceTag/Stage", "true")
    assert not condition(
        "Null", "aws:ResourceTag/Stage", "true", **{"aws:ResourceTag/Stage": "dev"}
    )
    assert condition("Null", "aws:ResourceTag/Stage", "false", **{"aws:ResourceTag/Stage": "dev"})
    assert not condition("Null", "aws:ResourceTag/Stage", "false")


def test_numeric_operators() -> None:
    assert condition("NumericLessThanEquals", "s3:max-keys", "10", **{"s3:max-keys": 10})
    assert not condition("NumericLessThanEquals", "s3:max-keys", "10", **{"s3:max-keys": "11"})
    assert condition("NumericLessThan", "n", "10", n=9) and not condition(
        "NumericLessThan", "n", "10", n=10
    )
    assert condition("NumericGreaterThan", "n", 1, n=2) and not condition(
        "NumericGreaterThan", "n", 1, n=1
    )
    assert condition("NumericGreaterThanEquals", "n", 1, n=1) and not condition(
        "NumericGreaterThanEquals", "n", 1, n=0
    )
    assert condition("NumericEquals", "n", "3", n="3.0") and not condition(
        "NumericEquals", "n", "3", n="4"
    )
    assert condition("NumericNotEquals", "n", "3", n=4) and not condition(
        "NumericNotEquals", "n", "3", n=3
    )
    assert not condition("NumericEquals", "n", "3", n="three")


def test_date_operators_read_iso_8601_and_epoch_seconds() -> None:
    key = "aws:CurrentTime"
    assert condition("DateLessThan", key, "2030-01-01T00:00:00Z", **{key: "2029-12-31T23:59:59Z"})
    assert not condition(
        "DateLessThan", key, "2030-01-01T00:00:00Z", **{key: "2030-01-01T00:00:00Z"}
    )
    assert condition("DateLessThanEquals", key, "2030-01-01T00:00:00Z", **{key: 1893456000})
    assert condition("DateGreaterThan", key, "1893456000", **{key: "2030-01-01T00:00:01+00:00"})
    assert not condition("DateGreaterThanEquals", key, "2030-01-01", **{key: "2029-12-31T23:00:00"})
    assert condition(
        "DateEquals", key, "2030-01-01T01:00:00+01:00", **{key: "2030-01-01T00:00:00Z"}
    )
    assert not condition("DateEquals", key, "2030-01-01", **{key: "soon"})


def test_ip_address() -> None:
    key = "aws:SourceIp"
    assert condition("IpAddress", key, ["10.0.0.0/8", "192.168.1.1"], **{key: "10.1.2.3"})
    assert condition("IpAddress", key, ["10.0.0.0/8", "192.168.1.1"], **{key: "192.168.1.1"})
    assert not condition("IpAddress", key, ["10.0.0.0/8", "192.168.1.1"], **{key: "11.0.0.1"})
    assert not condition("IpAddress", key, "10.0.0.0/8", **{key: "::1"})
    assert condition("NotIpAddress", key, "10.0.0.0/8", **{key: "11.0.0.1"})
    assert not condition("NotIpAddress", key, "10.0.0.0/8", **{key: "10.0.0.1"})


@pytest.mark.parametrize(
    "operator",
    [
        "StringEqualsButNotQuite",
        "BinaryEquals",
        "NullIfExists",
        "ForSomeValues:StringEquals",
        "stringequals",
    ],
)
def test_an_unknown_operator_is_an_error_naming_it_and_the_policy(operator: str) -> None:
    policy = identity(
        allow("s3:GetObject", Condition={operator: {"k": "v"}}), name="role/x/inline/y"
    )
    with pytest.raises(PolicyError, match="unknown condition operator") as raised:
        decide("s3:GetObject", "*", [policy], k="v")
    assert operator in str(raised.value) and "role/x/inline/y" in str(raised.value)


def test_an_unknown_operator_raises_even_in_a_statement_that_does_not_apply() -> None:
    policy = identity(allow("s3:GetObject"), deny("iam:*", Condition={"StringEqulas": {"k": "v"}}))
    with pytest.raises(PolicyError, match="StringEqulas"):
        decide("s3:GetObject", "*", [policy])


def test_unreadable_condition_values_are_errors() -> None:
    for operator, value in (
        ("Bool", "yes"),
        ("NumericEquals", "ten"),
        ("IpAddress", "10.0.0/33"),
        ("DateLessThan", "tomorrow"),
        ("Null", "maybe"),
    ):
        with pytest.raises(PolicyError, match=operator):
            condition(operator, "k", value, k="1")


# --- resource policies --------------------------------------------------------------------------
def bucket_policy(*statements: dict) -> Policy:
    return Policy("bucket-policy/mlops-artifacts", doc(*statements))


def test_bucket_policy_denies_insecure_transport() -> None:
    policy = bucket_policy(
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [BUCKET, f"{BUCKET}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    ident = [identity(allow("s3:GetObject", f"{BUCKET}/*"))]
    secure = decide("s3:GetObject", f"{BUCKET}/k", ident, [policy], **{"aws:SecureTransport": True})
    assert secure.allowed
    insecure = decide(
        "s3:GetObject", f"{BUCKET}/k", ident, [policy], **{"aws:SecureTransport": False}
    )
    assert not insecure.allowed
    assert (
        insecure.reason
        == "explicit deny in bucket-policy/mlops-artifacts statement 0 (DenyInsecureTransport)"
    )


def test_resource_policy_granting_a_specific_role() -> None:
    for principal in ({"AWS": ROLE}, {"AWS": [OTHER_ROLE, ROLE]}, "*", {"AWS": "*"}):
        policy = bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal=principal))
        decision = decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy])
        assert decision.allowed, principal
        assert decision.grants == (
            Grant("bucket-policy/mlops-artifacts", 0, "", "s3:GetObject", f"{BUCKET}/*"),
        )
    policy = bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": OTHER_ROLE}))
    decision = decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy])
    assert not decision.allowed
    assert "bucket-policy/mlops-artifacts" in decision.reason


def test_resource_policy_without_resource_applies_to_its_resource() -> None:
    policy = bucket_policy(
        {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject"}
    )
    assert decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy]).allowed
    assert not decide("s3:PutObject", f"{BUCKET}/k", resource_policies=[policy]).allowed


def test_resource_policy_for_a_service_principal() -> None:
    policy = bucket_policy(
        allow(
            "s3:PutObject",
            f"{BUCKET}/*",
            Principal={"Service": ["logging.s3.amazonaws.com", "sagemaker.amazonaws.com"]},
        )
    )
    assert decide(
        "s3:PutObject",
        f"{BUCKET}/k",
        resource_policies=[policy],
        principal="sagemaker.amazonaws.com",
    ).allowed
    assert not decide(
        "s3:PutObject", f"{BUCKET}/k", resource_policies=[policy], principal="glue.amazonaws.com"
    ).allowed
    assert not decide("s3:PutObject", f"{BUCKET}/k", resource_policies=[policy]).allowed


@pytest.mark.parametrize("account", [ACCOUNT, ROOT, [ROOT]])
def test_account_principal_in_a_resource_policy_delegates_to_identity_policies(account) -> None:
    policy = bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": account}))
    alone = decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy])
    assert not alone.allowed
    with_identity = decide(
        "s3:GetObject", f"{BUCKET}/k", [identity(allow("s3:GetObject"))], [policy]
    )
    assert with_identity.allowed
    other = bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": "999999999999"}))
    assert decide("s3:GetObject", f"{BUCKET}/k", [identity(allow("s3:GetObject"))], [other]).allowed
    assert not decide(
        "s3:GetObject", f"{BUCKET}/k", [identity(allow("s3:PutObject"))], [policy]
    ).allowed


def test_account_principal_is_a_direct_grant_to_the_account_root() -> None:
    policy = bucket_policy(allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": ACCOUNT}))
    assert decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy], principal=ROOT).allowed


def test_resource_policy_conditions_apply() -> None:
    policy = bucket_policy(
        allow(
            "s3:GetObject",
            f"{BUCKET}/*",
            Principal={"AWS": ROLE},
            Condition={"StringEquals": {"aws:PrincipalTag/Stage": "dev"}},
        )
    )
    assert decide(
        "s3:GetObject",
        f"{BUCKET}/k",
        resource_policies=[policy],
        **{"aws:PrincipalTag/Stage": "dev"},
    ).allowed
    assert not decide(
        "s3:GetObject",
        f"{BUCKET}/k",
        resource_policies=[policy],
        **{"aws:PrincipalTag/Stage": "prod"},
    ).allowed


def test_not_principal_deny_spares_only_the_named_principal() -> None:
    policy = bucket_policy(
        {
            "Effect": "Deny",
            "NotPrincipal": {"AWS": [ROLE, ACCOUNT]},
            "Action": "s3:*",
            "Resource": f"{BUCKET}/*",
        },
        allow("s3:GetObject", f"{BUCKET}/*", Principal={"AWS": [ROLE, OTHER_ROLE]}),
    )
    assert decide("s3:GetObject", f"{BUCKET}/k", resource_policies=[policy]).allowed
    assert not decide(
        "s3:GetObject", f"{BUCKET}/k", resource_policies=[policy], principal=OTHER_ROLE
    ).allowed


# --- KMS key policies ---------------------------------------------------------------------------
def key_policy(*statements: dict) -> Policy:
    return Policy("key-policy/1234abcd", doc(*statements))


ENABLE_IAM = allow("kms:*", "*", Sid="EnableIAMUserPermissions", Principal={"AWS": ROOT})
KMS_USER = identity(allow(["kms:Decrypt", "kms:GenerateDataKey"], KEY))


def test_key_policy_with_the_account_root_lets_identity_policies_allow() -> None:
    decision = decide("kms:Decrypt", KEY, [KMS_USER], [key_policy(ENABLE_IAM)], required=True)
    assert decision.allowed
    assert [g.policy for g in decision.grants] == [
        "role/mlops-deploy/inline/deploy",
        "key-policy/1234abcd",
    ]
    denied = decide("kms:Encrypt", KEY, [KMS_USER], [key_policy(ENABLE_IAM)], required=True)
    assert not denied.allowed and "no identity-based policy allows kms:Encrypt" in denied.reason


def test_key_policy_without_the_account_denies_despite_an_identity_allow() -> None:
    only_admin = allow("kms:*", "*", Principal={"AWS": f"arn:aws:iam::{ACCOUNT}:role/admin"})
    decision = decide("kms:Decrypt", KEY, [KMS_USER], [key_policy(only_admin)], required=True)
    assert not decision.allowed
    assert "key policy key-policy/1234abcd" in decision.reason
    assert not decide("kms:Decrypt", KEY, [KMS_USER], [], required=True).allowed
    # the same statements without the key-policy rule: the identity policy is enough
    assert decide("kms:Decrypt", KEY, [KMS_USER], [key_policy(only_admin)]).allowed


def test_key_policy_for_the_account_only_covers_the_actions_it_names() -> None:
    narrow = allow("kms:Decrypt", "*", Principal={"AWS": ACCOUNT})
    assert decide("kms:Decrypt", KEY, [KMS_USER], [key_policy(narrow)], required=True).allowed
    assert not decide(
        "kms:GenerateDataKey", KEY, [KMS_USER], [key_policy(narrow)], required=True
    ).allowed


def test_key_policy_grant_to_the_principal_allows_without_identity_policy() -> None:
    direct = allow("kms:Decrypt", "*", Principal={"AWS": ROLE})
    assert decide("kms:Decrypt", KEY, [], [key_policy(direct)], required=True).allowed
    assert not decide(
        "kms:Decrypt", KEY, [], [key_policy(direct)], principal=OTHER_ROLE, required=True
    ).allowed
    assert not decide("kms:Decrypt", KEY, [], [key_policy(ENABLE_IAM)], required=True).allowed


# --- documents that cannot be read --------------------------------------------------------------
@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ({"Effect": "allow", "Action": "s3:*", "Resource": "*"}, "Effect"),
        ({"Action": "s3:*", "Resource": "*"}, "Effect"),
        ({"Effect": "Allow", "Resource": "*"}, "Action"),
        ({"Effect": "Allow", "Action": "s3:*"}, "Resource"),
        ({"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}, "NotAction"),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Principal": "*"}, "Principal"),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotPrincipal": {"AWS": ROLE}},
            "Principal",
        ),
        ({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Conditions": {}}, "Conditions"),
        ({"Effect": "Allow", "Action": "GetObject", "Resource": "*"}, "service prefix"),
        ({"Effect": "Allow", "Action": 3, "Resource": "*"}, "Action"),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": "x"}},
            "Condition",
        ),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "${aws:username, nodefault}"},
            "variable",
        ),
    ],
)
def test_malformed_identity_statements_are_errors(statement: dict, message: str) -> None:
    with pytest.raises(PolicyError, match=message) as raised:
        decide("s3:GetObject", "x", [identity(statement, name="the-policy")])
    assert "the-policy" in str(raised.value)


def test_a_well_formed_statement_is_no_error() -> None:
    assert decide("s3:GetObject", "x", [identity(allow("s3:*", "x"))]).allowed


def test_a_resource_policy_statement_needs_a_principal() -> None:
    with pytest.raises(PolicyError, match="Principal"):
        decide("s3:GetObject", BUCKET, resource_policies=[bucket_policy(allow("s3:*"))])
    with pytest.raises(PolicyError, match="principal type"):
        decide(
            "s3:GetObject",
            BUCKET,
            resource_policies=[bucket_policy(allow("s3:*", Principal={"Aws": ROLE}))],
        )


@pytest.mark.parametrize(
    "document",
    [
        "not json",
        "[]",
        json.dumps({"Version": "2012-10-17"}),
        json.dumps({"Version": "2020-01-01", "Statement": []}),
        json.dumps({"Statement": ["x"]}),
    ],
)
def test_malformed_documents_are_errors(document: str) -> None:
    with pytest.raises(PolicyError, match="broken"):
        decide("s3:GetObject", "*", [Policy("broken", document)])


def test_documents_as_json_and_url_encoded_json() -> None:
    text = json.dumps(doc(allow("s3:GetObject", f"{BUCKET}/*")))
    for document in (text, quote(text)):
        assert document.startswith("%7B") or document.startswith("{")
        assert decide("s3:GetObject", f"{BUCKET}/k", [Policy("p", document)]).allowed
        assert not decide("s3:PutObject", f"{BUCKET}/k", [Policy("p", document)]).allowed
    single = json.dumps({"Version": "2012-10-17", "Statement": allow("s3:GetObject")})
    assert decide("s3:GetObject", "*", [Policy("p", single)]).allowed


def test_a_realistic_request_with_five_policies_and_a_bucket_policy() -> None:
    policies = [
        identity(allow(["s3:GetObject", "s3:PutObject"], f"{BUCKET}/*"), STAGE_SCOPED, name="a"),
        identity(
            deny("iam:*", Condition={"StringNotEquals": {"aws:RequestedRegion": "eu-west-1"}}),
            name="b",
        ),
        identity(
            allow(
                "sagemaker:*", "*", Condition={"StringEquals": {"aws:PrincipalTag/Stage": "dev"}}
            ),
            name="c",
        ),
        identity(allow("kms:Decrypt", KEY), allow("ecr:*", "*"), name="d"),
    ]
    bucket = bucket_policy(
        {
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": f"{BUCKET}/*",
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    )
    request = Request(
        "s3:GetObject",
        f"{BUCKET}/k",
        ROLE,
        {
            "aws:SecureTransport": True,
            "aws:PrincipalTag/Stage": "dev",
            "aws:RequestedRegion": "eu-west-1",
        },
    )
    assert evaluate(request, policies, [bucket]).allowed  # speed: measured, never asserted
