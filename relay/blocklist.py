"""The prompt pre-check (``RELAY_BLOCKLIST_FILE``): refuse a prompt before it reaches Runway — pure.

Runway counts moderated tasks against the account; a prompt the operator already knows will be
moderated is better refused here (422, nothing stored, nothing sent, no strike on the account).

The file has one rule per line. A line is a word or phrase, matched case-insensitively as whole words
(``knife`` matches "a Knife!" but not "knifes"), or ``re:`` followed by a regular expression (Python
syntax, case-insensitive), matched anywhere. Blank lines and lines starting with ``#`` are skipped.

::

    # things Runway's moderation refuses for us
    gore
    re:\\bblood(y|bath)?\\b
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ValidationError

REGEX_PREFIX = "re:"
_PROMPT_FIELD = re.compile(r"^(text_prompt|multishot_prompt_\d+)$")


class BlocklistError(ValueError):
    """The file has a rule that cannot be used (the message names the line)."""


@dataclass(frozen=True)
class Rule:
    """One rule: what the file says (``text``, for the refusal), where, and its compiled pattern."""

    text: str
    line: int
    pattern: re.Pattern[str]


def parse(content: str, source: str = "RELAY_BLOCKLIST_FILE") -> tuple[Rule, ...]:
    """The rules of a blocklist file's ``content``; :class:`BlocklistError` names a bad line."""
    rules = []
    for number, raw in enumerate(content.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith(REGEX_PREFIX):
            expression = line[len(REGEX_PREFIX) :].strip()
            if not expression:
                raise BlocklistError(f"{source} line {number}: 're:' needs a regular expression after it")
            try:
                pattern = re.compile(expression, re.IGNORECASE)
            except re.error as exc:
                message = f"{source} line {number}: {expression!r} is not a regular expression: {exc}"
                raise BlocklistError(message) from None
        else:
            words = r"\s+".join(re.escape(word) for word in line.split())
            pattern = re.compile(rf"(?<!\w){words}(?!\w)", re.IGNORECASE)
        rules.append(Rule(line, number, pattern))
    return tuple(rules)


def check(params: Mapping[str, Any], rules: tuple[Rule, ...]) -> None:
    """Raise :class:`ValidationError` (422) naming the first rule a prompt of ``params`` matches."""
    if not rules:
        return
    for name in sorted(k for k in params if _PROMPT_FIELD.match(k)):
        prompt = params[name]
        if not isinstance(prompt, str):
            continue
        for rule in rules:
            found = rule.pattern.search(prompt)
            if found:
                raise ValidationError(
                    f'{name} matches the blocklist rule "{rule.text}" (line {rule.line} of '
                    f'RELAY_BLOCKLIST_FILE) at "{found.group(0)}"; the prompt was not sent to Runway',
                    name,
                )
