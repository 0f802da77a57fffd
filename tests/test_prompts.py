"""Prompt files: loading, variables, rendering and the LangChain template built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel

from app.answer.llm import LLMEngine
from app.config import PROMPTS_DIR, Settings
from app.errors import ConfigError, PromptError
from app.prompts import Prompt, load_prompt

from .test_llm import P1

# What the code passes to each prompt (app/answer/llm.py, app/brief/llm.py).
EXPECTED_VARIABLES = {
    "answer": {"question", "sources"},
    "condense": {"history", "question"},
    "brief": {"bullets", "sources"},
}


def write_prompt(folder: Path, name: str, system: str, human: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(f"system = '''\n{system}\n'''\nhuman = '''\n{human}\n'''\n", encoding="utf-8")
    return path


@pytest.fixture
def greeting(tmp_path: Path) -> Prompt:
    write_prompt(tmp_path, "greet", 'You greet {name}. Output JSON like {{"hi": 1}}.', "Say hello to {name} in {lang}.")
    return load_prompt("greet", tmp_path)


def test_default_prompts_dir_is_the_repo_folder() -> None:
    assert Settings().prompts_dir == PROMPTS_DIR
    assert (PROMPTS_DIR / "answer.toml").is_file()


@pytest.mark.parametrize("path", sorted(PROMPTS_DIR.glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_prompt_loads_with_the_variables_the_code_passes(path: Path) -> None:
    prompt = load_prompt(path.stem, PROMPTS_DIR)
    assert prompt.variables == EXPECTED_VARIABLES[path.stem]
    values = {name: f"<{name} value>" for name in prompt.variables}
    rendered = prompt.render(**values)
    assert [role for role, _ in rendered] == ["system", "human"]
    assert all(f"<{name} value>" in rendered[1][1] for name in prompt.variables)
    assert not any(f"{{{name}}}" in text for _, text in rendered for name in prompt.variables)


def test_shipped_prompt_set_is_what_the_code_uses() -> None:
    assert {p.stem for p in PROMPTS_DIR.glob("*.toml")} == set(EXPECTED_VARIABLES)


def test_answer_prompt_states_the_rules() -> None:
    system = load_prompt("answer", PROMPTS_DIR).system
    for rule in ("NOT_IN_SOURCES:", "square brackets", "exactly", "data", "instructions", "disagree", "said"):
        assert rule in system, rule


def test_render_fills_placeholders_and_keeps_literal_braces(greeting: Prompt) -> None:
    assert greeting.variables == {"name", "lang"}
    assert greeting.render(name="Ada", lang="French") == [
        ("system", 'You greet Ada. Output JSON like {"hi": 1}.'),
        ("human", "Say hello to Ada in French."),
    ]


def test_values_are_not_reinterpreted_as_templates(greeting: Prompt) -> None:
    rendered = greeting.render(name="{lang} {0} {{x}}", lang="French")
    assert rendered[1][1] == "Say hello to {lang} {0} {{x}} in French."


def test_missing_variable_names_prompt_and_variable(greeting: Prompt) -> None:
    with pytest.raises(PromptError, match=r"prompt 'greet'.*missing variable\(s\) lang"):
        greeting.render(name="Ada")


def test_unknown_variable_names_prompt_and_variable(greeting: Prompt) -> None:
    with pytest.raises(PromptError, match=r"prompt 'greet'.*unknown variable\(s\) colour"):
        greeting.render(name="Ada", lang="French", colour="red")


def test_prompt_error_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_prompt("absent", tmp_path)
    assert isinstance(caught.value, PromptError)
    assert str(tmp_path / "absent.toml") in str(caught.value)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("system = 'x'\n", "needs a non-empty string 'human'"),
        ("system = 'x'\nhuman = ''\n", "needs a non-empty string 'human'"),
        ("system = 'x'\nhuman = 'y'\nhumn = 'z'\n", "unknown key"),
        ("system = 'x\nhuman = 'y'\n", "not valid TOML"),
        ("system = 'x {'\nhuman = 'y'\n", "bad placeholder"),
        ("system = 'x {0}'\nhuman = 'y'\n", "must be a plain"),
        ("system = 'x {a.b}'\nhuman = 'y'\n", "must be a plain"),
        ("system = 'x {a!r}'\nhuman = 'y'\n", "must be a plain"),
    ],
)
def test_malformed_prompt_files_are_prompt_errors_naming_the_file(tmp_path: Path, content: str, problem: str) -> None:
    (tmp_path / "bad.toml").write_text(content, encoding="utf-8")
    with pytest.raises(PromptError) as caught:
        load_prompt("bad", tmp_path)
    assert problem in str(caught.value)
    assert "prompt 'bad'" in str(caught.value)


def test_chat_template_uses_the_same_messages(greeting: Prompt) -> None:
    template = greeting.chat_template()
    assert set(template.input_variables) == greeting.variables
    messages = template.format_messages(name="Ada", lang="French")
    assert [(m.type, m.content) for m in messages] == greeting.render(name="Ada", lang="French")


def test_shipped_answer_template_matches_render_byte_for_byte() -> None:
    prompt = load_prompt("answer", PROMPTS_DIR)
    values = {"question": "What {happened}?", "sources": '<source id="1">\nText:\nA {brace} and }} here.\n</source>'}
    messages = prompt.chat_template().format_messages(**values)
    assert [(m.type, m.content) for m in messages] == prompt.render(**values)


def test_the_engine_passes_exactly_the_answer_prompts_variables() -> None:
    engine = LLMEngine(Settings(), FakeListChatModel(responses=["unused"]))
    values = engine.prepare("How many joined?", [P1]).values
    assert set(values) == load_prompt("answer", PROMPTS_DIR).variables == EXPECTED_VARIABLES["answer"]
