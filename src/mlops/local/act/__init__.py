"""Stand-ins that nektos/act needs to run the real workflows offline (``act`` is pinned in the dev
lock; nothing in the tests or in .ci/run runs it): each is a small HTTP server on 127.0.0.1.

- :mod:`.token_service`: GitHub's OIDC token request endpoint, one request token per job;
- :mod:`.artifact_stub`: the artifact service v4 (Twirp + signed blob URLs) of upload-artifact v7;
- :mod:`.github_rest`: the GitHub API calls of ci.yml's sticky pull-request comment;
- :mod:`.command`: act's command line for one job (servers on loopback) and its variables file.
"""
