"""The part of GitHub Actions' expression language the workflows use, for the local job runner.

Context paths (``vars.X``, ``needs.train.outputs.model-package-arn``,
``steps.build.outputs.digest``,
``github.sha``, ``inputs.stage``), string literals, ``==``, ``!=``, ``&&``, ``||``, ``!``,
parentheses and the status functions. A missing property is "" as on GitHub ("Contexts",
GitHub Actions docs); anything else is an error, never a guess.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlops.errors import ConfigError

TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||!|\(|\))"
    r"|(?P<call>[a-z]+)\(\)|(?P<path>[A-Za-z_][\w.-]*))"
)
TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)
STATUS = ("success", "failure", "always", "cancelled")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise ConfigError(f"local: cannot read the expression {text!r} at {text[pos:]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


class _Parser:
    def __init__(self, text: str, contexts: Mapping[str, Any], status: str) -> None:
        self.text, self.tokens, self.i = text, _tokens(text), 0
        self.contexts, self.status = contexts, status

    def parse(self) -> Any:
        value = self._or()
        if self.i != len(self.tokens):
            raise ConfigError(f"local: unexpected {self.tokens[self.i][1]!r} in {self.text!r}")
        return value

    def _peek(self) -> str:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else ""

    def _or(self) -> Any:
        left = self._and()
        while self._peek() == "||":
            self.i += 1
            right = self._and()
            left = left or right
        return left

    def _and(self) -> Any:
        left = self._compare()
        while self._peek() == "&&":
            self.i += 1
            right = self._compare()
            left = left and right
        return left

    def _compare(self) -> Any:
        left = self._unary()
        while self._peek() in ("==", "!="):
            op = self.tokens[self.i][1]
            self.i += 1
            right = self._unary()
            left = (str(left) == str(right)) == (op == "==")
        return left

    def _unary(self) -> Any:
        if self._peek() == "!":
            self.i += 1
            return not self._unary()
        if self._peek() == "(":
            self.i += 1
            value = self._or()
            if self._peek() != ")":
                raise ConfigError(f"local: missing ')' in {self.text!r}")
            self.i += 1
            return value
        if self.i >= len(self.tokens):
            raise ConfigError(f"local: the expression {self.text!r} ends too early")
        kind, value = self.tokens[self.i]
        self.i += 1
        if kind == "str":
            return value[1:-1].replace("''", "'")
        if kind == "call":
            if value not in STATUS:
                raise ConfigError(f"local: function {value}() is not supported ({self.text!r})")
            return {"always": True, "cancelled": False}.get(value, self.status == value)
        if value in ("true", "false"):
            return value == "true"
        return lookup(self.contexts, value)


def lookup(contexts: Mapping[str, Any], path: str) -> Any:
    head, *rest = path.split(".")
    if head not in contexts:
        raise ConfigError(f"local: unknown context {head!r} in {path!r}")
    value: Any = contexts[head]
    for part in rest:
        value = value.get(part, "") if isinstance(value, Mapping) else ""
    return value


def evaluate(text: str, contexts: Mapping[str, Any], status: str = "success") -> Any:
    """One expression, with or without its ``${{ }}``."""
    match = TEMPLATE.fullmatch(text.strip())
    return _Parser(match.group(1) if match else text, contexts, status).parse()


def render(value: Any, contexts: Mapping[str, Any]) -> Any:
    """Substitute every ``${{ }}`` in a string (recursively in lists and dicts)."""
    if isinstance(value, str):
        return TEMPLATE.sub(
            lambda m: _text(_Parser(m.group(1), contexts, "success").parse()), value
        )
    if isinstance(value, list):
        return [render(v, contexts) for v in value]
    if isinstance(value, dict):
        return {k: render(v, contexts) for k, v in value.items()}
    return value


def render_map(values: Mapping[str, Any], contexts: Mapping[str, Any]) -> dict[str, str]:
    """``env`` / ``with`` / ``outputs``: every value rendered to the text a step sees."""
    return {k: _text(render(v, contexts)) for k, v in values.items()}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "" if value is None else str(value)


def condition(text: Any, contexts: Mapping[str, Any], status: str) -> bool:
    """A step's ``if:``; without a status function GitHub adds ``success() &&``."""
    if text is None or text == "":
        return status == "success"
    text = str(text)
    if not any(f"{name}()" in text for name in STATUS):
        return status == "success" and bool(evaluate(text, contexts, status))
    return bool(evaluate(text, contexts, status))
