"""Presets respect the user: an `experiment=` or `hparams_search=` preset picks a data, mode or encoder
through its defaults list (`override /data: stsb`); an option set on the command line wins over it (Hydra's
order), and this module says so. When the preset also sets values for its own option (`data: {dir:
.../stsb}`), they would be merged into the user's option (the issue: `hparams_search=stsb_optuna data=demo`
trained on STS-B while the records said demo), so the run is refused before any work, naming both ways on."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

PRESETS = ("experiment", "hparams_search")
log = logging.getLogger(__name__)


class PresetConflict(ValueError):
    """A command-line option that a preset's own settings would be merged into."""


def check_presets(choices: dict[str, Any], overrides: list[str], config_dirs: list[Path]) -> list[str]:
    """Raise PresetConflict for a user's option that would get a preset's settings made for another option
    (keys the base config does not share across options, and the user did not set); return one note per option
    the user's command line took over from a preset."""
    named = {o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o}
    base = preset_file("", "train", config_dirs) or {}
    notes = []
    for preset in PRESETS:
        name = choices.get(preset)
        chain = preset_chain(preset, name, config_dirs) if name else []
        options = {g: o for spec in reversed(chain) for g, o in preset_options(spec).items()}
        for group, option in options.items():
            if group not in named or choices.get(group) == option:
                continue
            settings = {k for spec in chain for k in (spec.get(group) or {})} - set(base.get(group) or {})
            stale = sorted(k for k in settings if f"{group}.{k}" not in named)
            if stale:
                mine, keys = f"{group}={choices.get(group)}", [f"{group}.{k}" for k in stale]
                raise PresetConflict(
                    f"{preset}={name} picks {group}={option} and sets {', '.join(keys)} for it; {mine} on "
                    f"the command line would train with those values. Drop {mine}, set "
                    f"{', '.join(k + '=...' for k in keys)} yourself, or copy the preset into a config "
                    "folder of your own (--config-dir DIR)")
            notes.append(f"{group}={choices.get(group)} (command line) replaces {preset}={name}'s "
                         f"{group}={option}")
    return notes


def preset_chain(group: str, name: str, config_dirs: list[Path]) -> list[dict[str, Any]]:
    """The preset and the presets of the same group its defaults list includes (`- stsb_pooling`), outermost
    first."""
    spec = preset_file(group, name, config_dirs)
    if spec is None:
        return []
    inner = [e for e in spec.get("defaults") or [] if isinstance(e, str) and e != "_self_"]
    return [spec, *(s for e in inner for s in preset_chain(group, e, config_dirs))]


def preset_file(group: str, name: str, config_dirs: list[Path]) -> dict[str, Any] | None:
    """The preset's yaml from the first config folder that has it (a user's --config-dir before the
    package's)."""
    for folder in config_dirs:
        path = Path(folder, group, f"{name}.yaml")
        if path.is_file():
            return yaml.safe_load(path.read_text()) or {}
    return None


def preset_options(spec: dict[str, Any]) -> dict[str, str]:
    """{group: option} for each `override /<group>: <option>` in the preset's defaults (hydra/* aside)."""
    found = {}
    for entry in spec.get("defaults") or []:
        if not isinstance(entry, dict):
            continue
        for key, option in entry.items():
            key = str(key)
            if key.startswith("override /") and not key.startswith("override /hydra"):
                found[key.removeprefix("override /")] = str(option)
    return found


def config_dirs(sources: list[Any]) -> list[Path]:
    """The file folders Hydra searched, in its order (hydra.runtime.config_sources)."""
    return [Path(s["path"]) for s in sources if s.get("schema") == "file" and s.get("path")]
