"""Exceptions newsdesk raises. Callers never see a Chroma, OpenAI or torch exception type.

NewsdeskError
 ├── InputError              bad input from the user; nothing stored was touched
 │    └── ParseError         one file or record could not be read as an article
 ├── ConfigError             settings that cannot work
 ├── NotFoundError           an article id that is not stored
 ├── StoreError              the vector store failed or is unreachable
 │    └── EmbeddingMismatchError   collection built with another embedding model
 └── EmbeddingError          the embedding model failed or could not load
"""

from __future__ import annotations


class NewsdeskError(Exception):
    """Base class: the message says what happened and what to do about it."""


class InputError(NewsdeskError):
    pass


class ParseError(InputError):
    def __init__(self, source: str, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = source
        self.problem = problem


class ConfigError(NewsdeskError):
    pass


class NotFoundError(NewsdeskError):
    pass


class StoreError(NewsdeskError):
    pass


class EmbeddingMismatchError(StoreError):
    pass


class EmbeddingError(NewsdeskError):
    pass
