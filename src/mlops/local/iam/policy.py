"""AWS IAM policy evaluation for one account: the decision behind every local AWS request.

"Policy evaluation logic" (IAM User Guide) without SCPs, permission boundaries or session policies:
an explicit Deny wins; an Allow from an identity policy, or from a resource policy naming the
caller, allows; otherwise the implicit deny. Conditions and variables follow "Condition operators"
and "Variables and tags". What cannot be read is a PolicyError, never a guess (a guess would pass
locally what AWS refuses). Compiled patterns are cached: this runs for every request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

VARIABLE = re.compile(r"\$\{([^}]*)\}")
ACCOUNT = re.compile(r"(\d{12})|arn:aws[\w-]*:iam::(\d{12}):root")
ELEMENTS = {"Sid", "Effect", "Condition"} | {
    f"{n}{e}" for n in ("", "Not") for e in ("Action", "Resource", "Principal")
}
RELATIONS = {
    "Equals": operator.eq,
    "NotEquals": operator.eq,
    "LessThan": operator.lt,
    "LessThanEquals": operator.le,
    "GreaterThan": operator.gt,
    "GreaterThanEquals": operator.ge,
}
KINDS = {  # the condition operators by how they compare; "Not" in a name negates the comparison
    **dict.fromkeys(["StringEquals", "StringNotEquals"], "str"),
    **dict.fromkeys(["StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"], "istr"),
    **dict.fromkeys(["StringLike", "StringNotLike"], "like"),
    **dict.fromkeys(["ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike"], "arn"),
    **dict.fromkeys(["IpAddress", "NotIpAddress"], "ip"),
    **{f"{p}{r}": p.lower()[:4] for p in ("Numeric", "Date") for r in RELATIONS},
    "Bool": "bool",
    "Null": "null",
}
MULTI = (list, tuple, set, frozenset)


class PolicyError(Exception):
    """A policy the evaluator cannot read: unknown operator, malformed statement. Never guess."""


@dataclass(frozen=True)
class Policy:
    name: str  # "role/x/inline/y" or a managed policy ARN: what reasons and reports name
    document: dict[str, Any] | str  # JSON (or URL-encoded JSON, as moto keeps some) is decoded


@dataclass(frozen=True)
class Request:
    action: str  # "sagemaker:CreateTrainingJob", matched case-insensitively
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    principal: str  # a role ARN, a service principal ("sagemaker.amazonaws.com"), an account root
    context: Mapping[str, Any]  # condition keys (case-insensitive) -> str | bool | int | list[str]


@dataclass(frozen=True)
class Grant:
    """An Allow statement that matched: what the unused-grant report counts as used."""

    policy: str
    statement: int
    sid: str
    action: str  # the Action pattern as written ("NotAction:a,b" for a NotAction statement)
    resource: str  # the Resource pattern as written ("NotResource:a,b"; "" when there is none)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # one line a developer can act on
    grants: tuple[Grant, ...]  # the matched Allow statements; empty when denied


# --- patterns and variables ---------------------------------------------------------------------
@lru_cache(maxsize=8192)
def _wild(text: str) -> str:
    """IAM wildcards as regex source: * any run (across : and /), ? one character, else literal."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


@lru_cache(maxsize=8192)
def _rx(source: str, flags: int = re.S) -> re.Pattern[str]:
    return re.compile(source, flags)


@lru_cache(maxsize=4096)
def _action_rx(pattern: str) -> re.Pattern[str]:
    if pattern != "*" and ":" not in pattern:
        raise PolicyError(f"the action {pattern!r} has no service prefix")
    return _rx(_wild(pattern), re.S | re.I)


@lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[tuple[str, str, str | None], ...] | None:
    """("lit", text) / ("esc", char) / ("var", key, default) pieces; None without variables."""
    if "${" not in text or not VARIABLE.search(text):
        return None
    out: list[tuple[str, str, str | None]] = []
    pos = 0
    for match in VARIABLE.finditer(text):
        out.append(("lit", text[pos : match.start()], None))
        body = match.group(1).strip()
        key, comma, default = body.partition(",")
        default = default.strip()
        if body in ("*", "?", "$"):
            out.append(("esc", body, None))
        elif not key.strip() or (
            comma and not (len(default) > 1 and default[0] == "'" == default[-1])
        ):
            raise PolicyError(f"cannot read the policy variable {match.group(0)!r}")
        else:
            out.append(("var", key.strip().lower(), default[1:-1] if comma else None))
        pos = match.end()
    out.append(("lit", text[pos:], None))
    return tuple(out)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _fill(text: str, ctx: Mapping[str, Any], variables: bool, wild: bool) -> str | None:
    """text with its variables filled in (regex source if wild; values literal). None when a key
    is absent (or multivalued) and there is no default: AWS's "the variable does not match"."""
    tokens = _tokens(text) if variables else None
    if tokens is None:
        return _wild(text) if wild else text
    parts = []
    for kind, value, default in tokens:
        found = value
        if kind == "var":
            found = ctx.get(value)
            found = default if found is None or isinstance(found, MULTI) else _text(found)
            if found is None:
                return None
        parts.append(found if not wild else _wild(found) if kind == "lit" else re.escape(found))
    return "".join(parts)


def _like(text: str, ctx: Mapping[str, Any], variables: bool) -> re.Pattern[str] | None:
    source = _fill(text, ctx, variables, True)
    return None if source is None else _rx(source)


# --- conditions ---------------------------------------------------------------------------------
@lru_cache(maxsize=512)
def _operator(name: str) -> tuple[str, bool, str, bool, Callable[[Any, Any], bool]]:
    """(kind, negated, qualifier ("", ForAnyValue, ForAllValues), IfExists, relation)."""
    qualifier, _, base = name.rpartition(":")
    if_exists = base.endswith("IfExists") and base != "NullIfExists"
    base = base[: -len("IfExists")] if if_exists else base
    if qualifier not in ("", "ForAnyValue", "ForAllValues") or base not in KINDS:
        raise PolicyError(f"unknown condition operator {name!r}")
    relation = RELATIONS.get(base.removeprefix("Numeric").removeprefix("Date"), operator.eq)
    return KINDS[base], "Not" in base, qualifier, if_exists, relation


def _parse(kind: str, value: Any) -> Any:
    """A value as the operator compares it (epoch seconds for dates); None if unreadable."""
    try:
        if kind in ("bool", "null"):
            return {"true": True, "false": False}.get(_text(value).lower())
        if kind == "ip":
            return ipaddress.ip_network(value, strict=False)
        if kind == "addr":
            return ipaddress.ip_address(value)
        if isinstance(value, bool):
            return None
        if kind == "num" or isinstance(value, int | float):
            return float(value)
        if not isinstance(value, datetime):
            with contextlib.suppress(ValueError):
                return float(value)
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    except (TypeError, ValueError):
        return None


def _wanted(kind: str, name: str, texts: list[str]) -> list[Any]:
    wanted = [_parse(kind, t) for t in texts]
    if None in wanted:
        raise PolicyError(f"{name} cannot read the value(s) {texts!r}")
    return wanted


def _tester(
    name: str, values: list[Any], ctx: Mapping[str, Any], variables: bool
) -> Callable[[Any], bool]:
    """The positive test of one request value: does it match any of the condition's values?"""
    kind, relation = _operator(name)[0], _operator(name)[4]
    if kind in ("like", "arn"):  # ARN operators: wildcards as in Resource, on an ARN-shaped value
        patterns = [p for v in values if (p := _like(_text(v), ctx, variables)) is not None]
        return lambda item: (
            (kind == "like" or _text(item).count(":") >= 5)
            and any(p.fullmatch(_text(item)) for p in patterns)
        )
    texts = [t for v in values if (t := _fill(_text(v), ctx, variables, False)) is not None]
    if kind in ("str", "istr"):
        fold = str.casefold if kind == "istr" else str
        folded = {fold(t) for t in texts}
        return lambda item: fold(_text(item)) in folded
    wanted = _wanted(kind, name, texts)
    if kind == "bool":
        return lambda item: _parse("bool", item) in wanted
    if kind == "ip":
        return lambda item: any((a := _parse("addr", item)) is not None and a in n for n in wanted)
    return lambda item: (
        (got := _parse(kind, item)) is not None and any(relation(got, w) for w in wanted)
    )


def _condition(name: str, key: str, values: Any, ctx: Mapping[str, Any], variables: bool) -> bool:
    """One key of one operator: OR across its values; set qualifiers for multivalued keys."""
    kind, negated, qualifier, if_exists, _ = _operator(name)
    values = list(values) if isinstance(values, MULTI) else [values]
    found = ctx.get(key.lower())
    items = list(found) if isinstance(found, MULTI) else [] if found is None else [found]
    if kind == "null":
        return (not items) in _wanted("null", name, [_text(v) for v in values])
    if not items:  # absent: IfExists and negated operators hold, ForAllValues holds vacuously
        return if_exists or qualifier == "ForAllValues" or (negated and not qualifier)
    test = _tester(name, values, ctx, variables)
    if qualifier == "ForAllValues":
        return all(test(i) != negated for i in items)
    if qualifier == "ForAnyValue":
        return any(test(i) != negated for i in items)
    return any(test(i) for i in items) != negated  # a list without a qualifier: any value


# --- statements ---------------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _decode(text: str) -> Any:
    try:
        return json.loads(unquote(text) if text.lstrip().startswith("%") else text)
    except ValueError as exc:
        raise PolicyError(f"the document is not JSON: {exc}") from None


def _document(policy: Policy) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """(index, statement) pairs, and whether policy variables apply (not under Version 2008)."""
    try:
        doc = _decode(policy.document) if isinstance(policy.document, str) else policy.document
        if not isinstance(doc, dict) or "Statement" not in doc:
            raise PolicyError("the document has no Statement")
        version = doc.get("Version", "2012-10-17")  # absent: documents the caller assembles
        if version not in ("2012-10-17", "2008-10-17"):
            raise PolicyError(f"unknown Version {version!r}")
        found = doc["Statement"]
        found = [found] if isinstance(found, dict) else found
        if not isinstance(found, list) or not all(isinstance(s, dict) for s in found):
            raise PolicyError("Statement is neither an object nor a list of objects")
    except PolicyError as exc:
        raise PolicyError(f"policy {policy.name}: {exc}") from None
    return list(enumerate(found)), version == "2012-10-17"


def statements(policy: Policy) -> list[tuple[int, dict[str, Any]]]:
    """Normalised (index, statement) pairs: the indices Grant.statement refers to."""
    return _document(policy)[0]


def _strings(value: Any, element: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PolicyError(f"{element} must be a string or a list of strings")
    return value


def action_patterns(statement: dict[str, Any]) -> list[str]:
    """The Action patterns ([] for NotAction): what the unused-grant report lists."""
    return _strings(statement["Action"], "Action") if "Action" in statement else []


@lru_cache(maxsize=256)
def _shape(keys: frozenset[str], identity: bool) -> str:
    """What is wrong with a statement made of these elements, "" if nothing (shapes repeat)."""
    if keys - ELEMENTS:
        return f"unknown element(s) {sorted(keys - ELEMENTS)}"
    for one in ("Action", "Resource", "Principal"):
        if {one, f"Not{one}"} <= keys:
            return f"{one} and Not{one} together"
    if not keys & {"Action", "NotAction"}:
        return "no Action or NotAction"
    if identity and keys & {"Principal", "NotPrincipal"}:
        return "an identity-based policy cannot have Principal or NotPrincipal"
    if identity and not keys & {"Resource", "NotResource"}:
        return "no Resource or NotResource"
    if not identity and not keys & {"Principal", "NotPrincipal"}:
        return "a resource-based policy statement needs Principal or NotPrincipal"
    return ""


def _check(st: dict[str, Any], identity: bool) -> None:
    """Reject what AWS rejects, and what a typo would silently broaden ("Conditions")."""
    problem = _shape(frozenset(st), identity)
    if problem:
        raise PolicyError(problem)
    if st.get("Effect") not in ("Allow", "Deny"):
        raise PolicyError(f"Effect must be Allow or Deny, not {st.get('Effect')!r}")
    condition = st.get("Condition")
    if condition is not None:
        blocks = condition.values() if isinstance(condition, dict) else [None]
        if not all(isinstance(b, dict) for b in blocks):
            raise PolicyError("Condition must map operators to {key: values}")
        for name in condition:
            _operator(name)


def _principal(value: Any, caller: str) -> str:
    """ "direct" if it names the caller, "account" if only the caller's account, else ""."""
    if value == "*":
        return "direct"
    if not isinstance(value, dict):
        raise PolicyError(f"cannot read the principal {value!r}")
    account = caller.split(":")[4] if caller.startswith("arn:") and caller.count(":") >= 5 else ""
    best = ""
    for kind, names in value.items():
        if kind not in ("AWS", "Service", "Federated", "CanonicalUser"):
            raise PolicyError(f"unknown principal type {kind!r}")
        for name in _strings(names, f"Principal {kind}"):
            if name in ("*", caller):
                return "direct"
            match = ACCOUNT.fullmatch(name) if kind == "AWS" else None
            if match and account and account in match.groups():  # the root user is the account
                best = "direct" if caller == f"arn:aws:iam::{account}:root" else "account"
    return best


def _applies(
    st: dict[str, Any], identity: bool, request: Request, ctx: Mapping[str, Any], variables: bool
) -> tuple[str, str, str] | None:
    """(action pattern, resource pattern, how the principal matched) if the statement applies."""
    _check(st, identity)
    element = "Action" if "Action" in st else "NotAction"
    patterns = _strings(st[element], element)
    hits = [p for p in patterns if _action_rx(p).fullmatch(request.action)]  # checks them all
    action = hits[0] if hits else None
    if element == "NotAction":
        action = None if action is not None else "NotAction:" + ",".join(patterns)
    if action is None:
        return None
    resource: str | None = ""
    element = "Resource" if "Resource" in st else "NotResource" if "NotResource" in st else ""
    if element:  # no Resource in a resource policy: the resource it is attached to
        patterns = _strings(st[element], element)
        rxs = [(p, _like(p, ctx, variables)) for p in patterns]
        resource = next((p for p, rx in rxs if rx and rx.fullmatch(request.resource)), None)
        if element == "NotResource":
            resource = None if resource is not None else "NotResource:" + ",".join(patterns)
    if resource is None:
        return None
    via = "identity"
    if not identity:
        if "Principal" in st:
            via = _principal(st["Principal"], request.principal)
        else:  # NotPrincipal excludes only the principals it names exactly
            via = "" if _principal(st["NotPrincipal"], request.principal) == "direct" else "direct"
        if not via:
            return None
    for name, block in st.get("Condition", {}).items():
        for key, values in block.items():
            if not _condition(name, key, values, ctx, variables):
                return None
    return action, resource, via


def evaluate(
    request: Request,
    identity: Sequence[Policy] = (),
    resource_policies: Sequence[Policy] = (),
    *,
    resource_policy_required: bool = False,
) -> Decision:
    """AWS's decision for one request; ``resource_policy_required`` models a KMS key policy."""
    ctx = {k.lower(): v for k, v in request.context.items()}
    deny = ""
    found: dict[str, list[Grant]] = {"identity": [], "direct": [], "account": []}
    for is_identity, policies in ((True, identity), (False, resource_policies)):
        for policy in policies:
            pairs, variables = _document(policy)
            for i, st in pairs:  # every statement, after a deny too: a malformed one always raises
                try:
                    got = _applies(st, is_identity, request, ctx, variables)
                except PolicyError as exc:
                    raise PolicyError(f"policy {policy.name} statement {i}: {exc}") from None
                sid = str(st.get("Sid", ""))
                if got is not None and st["Effect"] == "Deny" and not deny:
                    deny = f"explicit deny in {policy.name} statement {i}" + f" ({sid})" * bool(sid)
                elif got is not None and st["Effect"] == "Allow":
                    found[got[2]].append(Grant(policy.name, i, sid, got[0], got[1]))
    if deny:
        return Decision(False, deny, ())
    grants = tuple(found["identity"] + found["direct"] + found["account"])
    what = f"{request.action} on {request.resource}"
    names = ", ".join(p.name for p in resource_policies)
    if resource_policy_required:  # a KMS key policy: IAM policies count only if it says so
        if found["direct"] or (found["account"] and found["identity"]):
            return Decision(True, "allowed", grants)
        reason = f"no identity-based policy allows {what} (the key policy {names} delegates to IAM)"
        if not found["account"]:
            reason = (
                f"no statement in the key policy {names} allows the caller or its account {what}"
            )
        return Decision(False, reason if names else f"no key policy applies to {what}", ())
    if found["identity"] or found["direct"]:
        return Decision(True, "allowed", grants)
    reason = f"no identity-based policy allows {what}"
    if resource_policies:
        reason += f" and no statement in the resource-based policy {names} allows the caller"
    return Decision(False, reason, ())
