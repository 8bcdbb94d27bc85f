"""Scenario files: TOML scripts of faults, shipped in `scenarios/` and loaded by name.

A scenario is `name`, `description` and a list of `[[faults]]` tables, each a
`Fault` (see `faults.py`) whose `start_s` / `end_s` count from the moment the
scenario is loaded. Unknown keys are refused, so a typo fails loudly.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import msgspec

from sandbox.faults import Scenario

SCENARIO_DIR = Path(__file__).parent / "scenarios"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class ScenarioError(ValueError):
    """A scenario that does not exist or does not parse; the message says which and why."""


def available() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.toml"))


def parse(text: str, *, source: str = "<scenario>") -> Scenario:
    try:
        data = tomllib.loads(text)
        return msgspec.convert(data, type=Scenario)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise ScenarioError(f"{source}: {exc}") from None


def load(name: str) -> Scenario:
    """The shipped scenario called `name` (its file is `scenarios/<name>.toml`)."""
    if not _NAME.match(name):
        raise ScenarioError(f"not a scenario name: {name!r}")
    path = SCENARIO_DIR / f"{name}.toml"
    if not path.is_file():
        raise ScenarioError(f"no scenario {name!r}; known: {', '.join(available())}")
    scenario = parse(path.read_text(encoding="utf-8"), source=path.name)
    if scenario.name != name:
        raise ScenarioError(f"{path.name} calls itself {scenario.name!r}")
    return scenario
