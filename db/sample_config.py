"""Print a commented sample node.conf with every key and its default (make sample-config)."""
import textwrap

from .config_keys import KEYS, OPEN_PREFIXES


def render() -> str:
    lines = ["# qvd node configuration: `key = value`, `#` starts a comment.",
             "# Layering: built-in defaults < this file < `qvd-admin config set` (global, then -t tenant).",
             "# Keys marked [node] are read from this file only.",
             f"# Free-form keys: {', '.join(p + '*' for p in OPEN_PREFIXES)}", ""]
    for key in KEYS:
        scope = " [node]" if key.scope == "node" else ""
        for part in textwrap.wrap(key.doc + scope, 96):
            lines.append(f"# {part}")
        lines.append(f"#{key.name} = {key.default if key.default is not None else ''}".rstrip())
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render(), end="")
