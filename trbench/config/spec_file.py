"""Reading a spec file: strict YAML (a key given twice is an error, not the last one silently)
with one-line SpecErrors for a file that cannot be read, is not UTF-8 or is not valid YAML."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any

import yaml

from trbench.config.errors import SpecError


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(p: Path) -> Any:
    try:
        raw = p.read_bytes()
    except OSError as err:
        raise SpecError(f"spec {p}: cannot read the file ({err.strerror}); fix: check its permissions") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise SpecError(f"spec {p}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); "
                        "fix: save the file as UTF-8") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or getattr(err, "reason", None)
        why = f" ({' '.join(str(problem).split())})" if problem else ""
        fix = "keep one of them" if "appears twice" in why else "check indentation and quoting"
        raise SpecError(f"spec {p}: not valid YAML{where}{why}; fix: {fix}") from None
    except RecursionError:
        raise SpecError(f"spec {p}: not valid YAML (nested too deeply); fix: check the structure") from None
    if data is None:
        raise SpecError(f"spec {p}: the file is empty; fix: give at least tr_id and models, "
                        "see deployments/quickstart.yaml")
    return data
