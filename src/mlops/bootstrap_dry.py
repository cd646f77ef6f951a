"""``scripts/bootstrap --dry-run``: boto3 stand-ins that print each call and answer with
placeholders, so the whole flow runs, in order, without an account."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError


class DryClient:
    """Stands in for a boto3 client: prints each call and answers with canned responses.

    Each operation answers from its queue in turn (the last answer repeats); an exception in
    the queue is raised, as boto3 raises for a stack that does not exist.
    """

    def __init__(self, service: str, answers: dict[str, list[Any]]) -> None:
        self.service, self.answers = service, answers

    def __getattr__(self, operation: str) -> Callable[..., dict]:
        def call(**params: Any) -> dict:
            shown = {k: "<secret>" if k == "SecretString" else _short(v) for k, v in params.items()}
            print(f"aws {self.service} {operation} {json.dumps(shown, sort_keys=True)}", flush=True)
            queue = self.answers.get(operation, [{}])
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def _short(value: Any) -> Any:
    return f"<{len(value)} bytes>" if isinstance(value, str) and len(value) > 200 else value


def clients(
    outputs_of: tuple[str, ...], inference_stacks: int, retrain: bool
) -> dict[str, DryClient]:
    """Placeholder answers: no OIDC provider yet, no stacks yet, creates that succeed."""
    outputs = [{"OutputKey": k, "OutputValue": f"<{k}>"} for k in outputs_of]
    done = {
        "Stacks": [{"StackName": "<stack>", "StackStatus": "CREATE_COMPLETE", "Outputs": outputs}]
    }
    error = {
        "Error": {"Code": "ValidationError", "Message": "Stack with id <stack> does not exist"}
    }
    missing = ClientError(error, "DescribeStacks")
    no_secret = ClientError(
        {"Error": {"Code": "ResourceNotFoundException", "Message": "not found"}}, "DescribeSecret"
    )
    secrets = {"describe_secret": [no_secret], "create_secret": [{"VersionId": "0" * 32}]}
    return {
        "secretsmanager": DryClient("secretsmanager", secrets),
        "sts": DryClient("sts", {"get_caller_identity": [{"Account": "<account>"}]}),
        "iam": DryClient("iam", {"list_open_id_connect_providers": [{}]}),
        "cloudformation": DryClient(
            "cloudformation",
            {
                # bootstrap: before, settled; github-access: oidc check, before, settled;
                # then before and settled for each inference and monitor stack
                "describe_stacks": [missing, done, missing, missing, done]
                + [missing, done] * (inference_stacks + retrain),
                "create_change_set": [{"Id": "<change-set-arn>"}],
                "describe_change_set": [{"Status": "CREATE_COMPLETE", "Changes": []}],
                "describe_stack_events": [{"StackEvents": []}],
            },
        ),
    }
