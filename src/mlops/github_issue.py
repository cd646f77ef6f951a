"""One open GitHub issue labelled ``drift``: opened when drift is found, updated while it lasts.

Through ``gh api`` (the runner's gh, authenticated by the job's GITHUB_TOKEN with
``issues: write``), with the same runner type as the bootstrap's GitHub setup, so the local
stand-in answers it offline. REST: "List repository issues" (``labels``, ``state``; pull requests
are issues there too, hence the ``pull_request`` filter), "Create an issue", "Update an issue",
"Create an issue comment" (https://docs.github.com/en/rest/issues/issues). A label an issue is
created with that does not exist yet is created by GitHub; one issue stays the place to look,
and each new finding is a comment, so watchers are notified without a second issue.
"""

from __future__ import annotations

from mlops.github_setup import Gh

LABEL = "drift"
BODY_LIMIT = 65536  # GitHub's maximum issue body, in characters


def _fit(text: str) -> str:
    if len(text) <= BODY_LIMIT:
        return text
    return (
        text[: BODY_LIMIT - 80] + "\n\n… (cut to GitHub's body limit: the full report is in S3)\n"
    )


def open_issue(gh: Gh, repo: str) -> int | None:
    """The number of the open ``drift`` issue (the oldest), or None."""
    jq = "[.[] | select(.pull_request == null)] | sort_by(.number) | .[0].number // empty"
    found = gh(
        [
            "api",
            "--method",
            "GET",
            f"repos/{repo}/issues",
            "-f",
            f"labels={LABEL}",
            "-f",
            "state=open",
            "--jq",
            jq,
        ],
        placeholder="",
    )
    return int(found) if found.strip() else None


def report(gh: Gh, repo: str, title: str, body: str, comment: str) -> tuple[str, int]:
    """("opened" | "updated", the issue number) for this finding."""
    number = open_issue(gh, repo)
    if number is None:
        created = gh(
            ["api", "--method", "POST", f"repos/{repo}/issues", "--input", "-", "--jq", ".number"],
            {"title": title, "body": _fit(body), "labels": [LABEL]},
            placeholder="1",
        )
        return "opened", int(created)
    base = f"repos/{repo}/issues/{number}"
    gh(["api", "--method", "PATCH", base, "--input", "-"], {"title": title, "body": _fit(body)})
    gh(["api", "--method", "POST", f"{base}/comments", "--input", "-"], {"body": _fit(comment)})
    return "updated", number
