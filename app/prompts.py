"""Prompt templates kept as files: ``<prompts_dir>/<name>.toml`` with ``system`` and ``human``.

Both messages use Python ``{variable}`` placeholders (literal braces doubled). The same
text drives ``Prompt.render`` (for logs and checks) and ``Prompt.chat_template`` (for
LangChain chains), so what is logged is what the model is sent.
"""

from __future__ import annotations

import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from langchain_core.prompts import ChatPromptTemplate

from app.errors import PromptError

Role = Literal["system", "human"]
_ROLES: tuple[Role, ...] = ("system", "human")
_OPTIONAL_KEYS = frozenset({"description"})
_FORMATTER = string.Formatter()


@dataclass(frozen=True)
class Prompt:
    name: str
    path: Path
    system: str
    human: str

    @property
    def messages(self) -> list[tuple[Role, str]]:
        return [("system", self.system), ("human", self.human)]

    @property
    def variables(self) -> set[str]:
        return _variables(self.name, self.system) | _variables(self.name, self.human)

    def render(self, **values: object) -> list[tuple[Role, str]]:
        """The messages with every placeholder filled; exactly the prompt's variables are accepted."""
        missing = sorted(self.variables - values.keys())
        unknown = sorted(values.keys() - self.variables)
        problems = []
        if missing:
            problems.append(f"missing variable(s) {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown variable(s) {', '.join(unknown)}")
        if problems:
            expected = ", ".join(sorted(self.variables)) or "none"
            raise PromptError(f"prompt '{self.name}' ({self.path}): {'; '.join(problems)} (expects: {expected})")
        return [(role, text.format_map(values)) for role, text in self.messages]

    def chat_template(self) -> ChatPromptTemplate:
        """A LangChain template built from the same two messages."""
        return ChatPromptTemplate.from_messages(self.messages, template_format="f-string")


def load_prompt(name: str, prompts_dir: Path) -> Prompt:
    """Read ``prompts_dir/name.toml``; any problem is a ``PromptError`` naming the file."""
    path = Path(prompts_dir) / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PromptError(f"prompt '{name}' not found: {path} does not exist (check NEWSDESK_PROMPTS_DIR)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise PromptError(f"prompt '{name}': cannot read {path}: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise PromptError(f"prompt '{name}': {path} is not valid TOML: {error}") from None
    for role in _ROLES:
        if not isinstance(data.get(role), str) or not data[role].strip():
            raise PromptError(f"prompt '{name}': {path} needs a non-empty string '{role}'")
    extra = sorted(set(data) - set(_ROLES) - _OPTIONAL_KEYS)
    if extra:
        raise PromptError(f"prompt '{name}': {path} has unknown key(s) {', '.join(extra)} (allowed: system, human)")
    prompt = Prompt(name=name, path=path, system=data["system"].strip(), human=data["human"].strip())
    prompt.variables  # noqa: B018 - validates the placeholders now, not at the first request
    return prompt


def _variables(name: str, template: str) -> set[str]:
    try:
        fields = [(field, spec, conv) for _, field, spec, conv in _FORMATTER.parse(template) if field is not None]
    except ValueError as error:
        raise PromptError(
            f"prompt '{name}': bad placeholder ({error}); write literal braces as {{{{ and }}}}"
        ) from None
    names = set()
    for field, spec, conversion in fields:
        if not field.isidentifier() or spec or conversion:
            raise PromptError(
                f"prompt '{name}': placeholder {{{field}}} must be a plain {{name}} "
                "(no positions, attributes, indexes, conversions or format specs)"
            )
        names.add(field)
    return names
