from __future__ import annotations

import re

from app.config import Settings

from .conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_readme_lists_every_setting() -> None:
    listed = set(re.findall(r"`NEWSDESK_([A-Z_]+)`", README))
    assert {name.upper() for name in Settings.model_fields} <= listed


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    setup = [line.split("#")[0].strip() for line in blocks[0].strip().splitlines()]
    assert len(setup) == 2, "the first screen gives exactly two set-up commands"
    for command in setup:
        assert command in ci
