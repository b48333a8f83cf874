"""docs/CONFIG.md, generated from the config models: every key's type, default and meaning, as declared.

The meaning of each key is its section's docstring (``Attributes:``, Google style; a section that
extends another, as ``train`` extends ``models.training.FitSettings``, reads both, its own first).
``tests/job/test_config.py`` checks that docs/CONFIG.md is what this writes and that no key lacks a text.

    python -m beam_pipeline.config_reference > docs/CONFIG.md
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any

from pydantic import BaseModel

from beam_pipeline.config import JobConfig

__all__ = ["key_docs", "render"]

_HEADER = """# Configuration

Generated from the config models (`beam_pipeline/config.py`) by `python -m beam_pipeline.config_reference
> docs/CONFIG.md`; a test fails when this file and the models differ. `configs/local.yaml` is a runnable
example with every key.

A config is YAML with the sections below. `--input`, `--output` and `--model` replace `input.paths`,
`output.path` and `model.handle` with the values as typed (never parsed as YAML); `--set
SECTION.KEY=VALUE` overrides any key (the value parsed as YAML). Flags videolabel does not define pass
through to Beam's PipelineOptions (`--direct_num_workers=2`, `--runner=DataflowRunner`, `--project=...`);
the `runner` section holds the same options in the config. Each section is a frozen pydantic model that
declares each key's type and range: a wrong type, a value out of range or an unknown key fails at load,
before any video is read, with one line naming `section.key` and the value.
"""


def _attributes(docstring: str) -> dict[str, str]:
    """The ``Attributes:`` block of one docstring: key -> its text on one line."""
    docs: dict[str, str] = {}
    names: list[str] = []
    for line in inspect.cleandoc(docstring).split("Attributes:", 1)[-1].splitlines()[1:]:
        entry = re.match(r"^    ([a-z_][a-z_0-9, ]*): (.*)$", line)
        if entry:
            names = [name.strip() for name in entry[1].split(",")]
            docs.update(dict.fromkeys(names, entry[2]))
        elif line.startswith("        ") and names:
            docs.update({name: f"{docs[name]} {line.strip()}" for name in names})
        elif line.strip():
            break
    return docs


def key_docs(section: type[BaseModel]) -> dict[str, str]:
    """Each key's text in the ``Attributes:`` blocks of ``section``'s docstring and its bases', the
    section's own first; ``a, b: text`` documents both ``a`` and ``b``."""
    docs: dict[str, str] = {}
    for cls in section.__mro__:
        docstring = vars(cls).get("__doc__")
        if docstring and "Attributes:" in docstring:
            for key, text in _attributes(docstring).items():
                docs.setdefault(key, text)
    return docs


def _default(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value)}`"


def _type(schema: dict[str, Any]) -> str:
    """A key's JSON schema (pydantic's) as a short type: ``integer > 0``, ``"fps" | "uniform"``, ..."""
    if "enum" in schema:
        return " \\| ".join(json.dumps(value) for value in schema["enum"])
    if schema.get("anyOf") == [{"type": "integer"}, {"type": "number"}]:
        kind = "number"
    elif "anyOf" in schema:
        kind = " \\| ".join(_type(part) for part in schema["anyOf"])
    elif schema.get("type") == "array":
        kind = f"list of {_type(schema.get('items', {}))}"
    elif schema.get("type") == "object":
        kind = f"map of string to {_type(schema.get('additionalProperties', {}))}"
    else:
        kind = schema.get("type", "any")
    signs = {"minimum": ">=", "ge": ">=", "exclusiveMinimum": ">", "gt": ">", "maximum": "<=", "le": "<=",
             "exclusiveMaximum": "<", "lt": "<"}  # JSON schema's names, and pydantic's on a custom schema
    bounds = [f"{sign} {schema[key]:g}" for key, sign in signs.items() if key in schema]
    return " ".join([f"({kind})" if bounds and "|" in kind else kind, *bounds])


def render() -> str:
    """The whole of docs/CONFIG.md."""
    out = [_HEADER]
    for name, field in JobConfig.model_fields.items():
        section = field.annotation
        if not (isinstance(section, type) and issubclass(section, BaseModel)):
            out.append(f"\n## `{name}`\n\nBeam / Dataflow pipeline options, as the flags of the same "
                       "names (`direct_num_workers: 2`, `project: my-project`); flags given on the command "
                       "line win. On a local runner `direct_running_mode: auto` (the shipped configs) is "
                       "videolabel's own value: a few videos (up to 4 MB, 64 files; one video for a "
                       "base-mode MoViNet) run in this process (`in_memory`), more on "
                       "`direct_num_workers` worker processes (`multi_processing`; `0`: one per usable "
                       "core); `_run.json` `throughput.running_mode` says which and why.\n")
            continue
        summary = (inspect.getdoc(section) or "").split("\n\n", 1)[0].replace("\n", " ")
        out.append(f"\n## `{name}`\n\n{summary}\n\n| key | type | default | meaning |\n|---|---|---|---|")
        docs = key_docs(section)
        schemas = section.model_json_schema()["properties"]
        for key, spec in section.model_fields.items():
            default = spec.default_factory() if spec.default_factory else spec.default
            meaning = docs.get(key, "").replace("``", "`").replace("|", "\\|")
            out.append(f"| `{name}.{key}` | {_type(schemas[key])} | {_default(default)} | {meaning} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
