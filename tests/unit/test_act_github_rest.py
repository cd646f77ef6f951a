"""The loopback GitHub API of ci.yml's sticky comment: the calls sticky-pull-request-comment
v3.0.5 makes (GraphQL find, REST create, GraphQL update), shaped as its Octokit sends them."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mlops.local.act.github_rest import GitHubRest

ROOT = Path(__file__).resolve().parents[2]
REPO, TOKEN, PR = "O/R", "ghs_local", 7
FIND = """
query($repo: String! $owner: String! $number: Int! $after: String) {
  viewer { login }
  repository(name: $repo owner: $owner) {
    pullRequest(number: $number) {
      comments(first: 100 after: $after) {
        nodes { id author { login } isMinimized body }
        pageInfo { endCursor hasNextPage }
      }
    }
  }
}"""
UPDATE = """mutation($input: UpdateIssueCommentInput!) {
  updateIssueComment(input: $input) { issueComment { id body } } }"""
MINIMIZE = """mutation($input: MinimizeCommentInput!) {
  minimizeComment(input: $input) { clientMutationId } }"""


@pytest.fixture
def github():
    with GitHubRest(REPO, TOKEN) as running:
        yield running


def call(github, method, path, body=None, token=TOKEN):
    headers = {"Content-Type": "application/json", "Accept": "application/vnd.github+json"}
    if token:
        headers["Authorization"] = f"token {token}"  # @octokit/auth-token's prefix for a non-JWT
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{github.url}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def graphql(github, query, **variables):
    status, answer = call(github, "POST", "/graphql", {"query": query, "variables": variables})
    assert status == 200
    return answer


def sticky(github, header: str, message: str) -> None:
    """What the action does with `header` and `message` (src/main.ts, src/comment.ts)."""
    marker = f"<!-- Sticky Pull Request Comment{header} -->"
    owner, repo = REPO.split("/")
    data = graphql(github, FIND, owner=owner, repo=repo, number=PR, after=None)["data"]
    me = data["viewer"]["login"].replace("[bot]", "")
    nodes = data["repository"]["pullRequest"]["comments"]["nodes"]
    previous = next(
        (
            n
            for n in nodes
            if n["author"]["login"] == me and not n["isMinimized"] and marker in n["body"]
        ),
        None,
    )
    body = f"{message}\n{marker}"
    if previous is None:
        status, created = call(
            github, "POST", f"/repos/{REPO}/issues/{PR}/comments", {"body": body}
        )
        assert status == 201 and created["body"] == body
    else:
        answer = graphql(github, UPDATE, input={"id": previous["id"], "body": body})
        assert answer["data"]["updateIssueComment"]["issueComment"]["body"] == body


def test_ci_still_uses_the_sticky_comment_action_this_stands_in_for():
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "marocchino/sticky-pull-request-comment@" in ci and "# v3.0.5" in ci
    assert "header: model-metrics" in ci


def test_the_first_run_creates_the_comment_and_the_next_updates_it(github):
    sticky(github, "model-metrics", "| rmse | 2.10 |")
    sticky(github, "model-metrics", "| rmse | 2.05 |")
    (only,) = github.on(PR)
    # the action appends the header without a space: "Comment" + "model-metrics"
    assert only.body == "| rmse | 2.05 |\n<!-- Sticky Pull Request Commentmodel-metrics -->"
    assert github.log == [
        ("POST", "graphql pullRequest"),
        ("POST", f"/repos/{REPO}/issues/{PR}/comments"),
        ("POST", "graphql pullRequest"),
        ("POST", "graphql updateIssueComment"),
    ]


def test_another_header_gets_its_own_comment_and_a_minimized_one_is_not_reused(github):
    sticky(github, "model-metrics", "a")
    sticky(github, "other", "b")
    assert len(github.on(PR)) == 2
    first = github.on(PR)[0]
    assert graphql(github, MINIMIZE, input={"subjectId": first.node_id, "classifier": "OUTDATED"})[
        "data"
    ] == {"minimizeComment": {"clientMutationId": None}}
    sticky(github, "model-metrics", "c")
    assert [c.body.split("\n")[0] for c in github.on(PR)] == ["a", "b", "c"]


def test_rest_comments_are_the_bots_and_list_and_update(github):
    status, created = call(github, "POST", f"/repos/{REPO}/issues/{PR}/comments", {"body": "hi"})
    assert (status, created["user"]["login"]) == (201, "github-actions[bot]")
    status, edited = call(
        github, "PATCH", f"/repos/{REPO}/issues/comments/{created['id']}", {"body": "yo"}
    )
    assert (status, edited["body"]) == (200, "yo")
    status, listed = call(github, "GET", f"/repos/{REPO}/issues/{PR}/comments")
    assert [c["body"] for c in listed] == ["yo"]


@pytest.mark.parametrize("token", [None, "wrong"])
def test_a_missing_or_wrong_token_is_401(github, token):
    status, answer = call(
        github, "POST", f"/repos/{REPO}/issues/{PR}/comments", {"body": "x"}, token
    )
    assert (status, answer["message"]) == (401, "Bad credentials")
    assert github.comments == {} and github.log == []


def test_unknown_routes_repositories_and_nodes(github):
    assert call(github, "GET", "/repos/O/R/pulls")[0] == 404
    answer = graphql(github, FIND, owner="X", repo="Y", number=PR, after=None)
    assert answer["data"] == {"repository": None} and answer["errors"][0]["type"] == "NOT_FOUND"
    answer = graphql(github, UPDATE, input={"id": "IC_nope", "body": "x"})
    assert answer["errors"][0]["type"] == "NOT_FOUND"
    assert graphql(github, "query { viewer { login } }")["errors"]


def test_the_find_query_pages_by_100(github):
    for n in range(150):
        call(github, "POST", f"/repos/{REPO}/issues/{PR}/comments", {"body": str(n)})
    page = graphql(github, FIND, owner="O", repo="R", number=PR, after=None)
    comments = page["data"]["repository"]["pullRequest"]["comments"]
    assert len(comments["nodes"]) == 100 and comments["pageInfo"]["hasNextPage"]
    after = comments["pageInfo"]["endCursor"]
    rest = graphql(github, FIND, owner="O", repo="R", number=PR, after=after)
    comments = rest["data"]["repository"]["pullRequest"]["comments"]
    assert [n["body"] for n in comments["nodes"]] == [str(n) for n in range(100, 150)]
    assert not comments["pageInfo"]["hasNextPage"]
