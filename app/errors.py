"""Exceptions newsdesk raises. Callers never see a Chroma, OpenAI or torch exception type.

NewsdeskError
 ├── InputError                  bad input from the user; nothing stored was touched
 │    ├── ParseError             one file or record could not be read as an article
 │    ├── FetchError             a page or feed could not be fetched: unreachable, slow, refused, too large
 │    └── LabelError             an eval label file that cannot be read
 ├── NotConfiguredError          a request for the LLM engine when none is configured
 ├── ConfigError                 settings that cannot work
 │    └── PromptError            a prompt file missing or malformed, or rendered with the wrong variables
 ├── NotFoundError               an article id that is not stored
 ├── StoreError                  the vector store failed or is unreachable
 │    └── EmbeddingMismatchError collection built with another embedding model
 ├── EmbeddingError              the embedding model failed or could not load
 └── LLMUnavailableError         the chat model could not answer: unreachable, timing out, refusing
      └── MalformedOutputError   it answered, but not in the shape asked for
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


class LabelError(InputError):
    """A questions or briefs label file that is missing or malformed."""


class NotConfiguredError(NewsdeskError):
    pass


class ConfigError(NewsdeskError):
    pass


class PromptError(ConfigError):
    """A prompt file that is missing or malformed, or rendered with the wrong variables."""


class NotFoundError(NewsdeskError):
    """No stored article has ``article_id``; each boundary says where to look for ids."""

    def __init__(self, article_id: str) -> None:
        super().__init__(f"no article with id '{article_id}'")
        self.article_id = article_id


class StoreError(NewsdeskError):
    pass


class EmbeddingMismatchError(StoreError):
    pass


class EmbeddingError(NewsdeskError):
    pass


class FetchError(InputError):
    """``url`` could not be fetched. ``transient``: trying again later may work (a timeout, a refused
    connection, HTTP 5xx or 429); ``retry_after_s``: how long the server asked us to wait, if it did."""

    def __init__(self, url: str, problem: str, *, transient: bool, retry_after_s: float | None = None) -> None:
        super().__init__(f"{url}: {problem}")
        self.url = url
        self.problem = problem
        self.transient = transient
        self.retry_after_s = retry_after_s


class LLMUnavailableError(NewsdeskError):
    """The chat model could not produce an answer: unreachable, timing out, refusing the request."""


class MalformedOutputError(LLMUnavailableError):
    """The model replied, but not with the output asked for (e.g. not the JSON brief)."""
