"""The amazon-ecr-login stand-in's one step: GetAuthorizationToken with the job's credentials
(those configure-aws-credentials exported), the registry host as the ``registry`` output."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit


def main() -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        data = boto3.client("ecr").get_authorization_token()["authorizationData"][0]
    except (BotoCoreError, ClientError) as exc:
        print(f"::error::Could not get an ECR authorization token: {exc}", flush=True)
        return 1
    registry = urlsplit(data["proxyEndpoint"]).netloc or data["proxyEndpoint"]
    print(f"amazon-ecr-login stand-in: token for {registry} (no docker login: no registry "
          "answers there offline)", flush=True)  # fmt: skip
    with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as out:  # noqa: PTH123
        out.write(f"registry={registry}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
