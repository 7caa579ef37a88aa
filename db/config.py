"""Effective configuration: built-in defaults < node file < DB global < DB per tenant.

The node file (QVD_CONFIG, default /etc/qvd/node.conf) holds `key = value` lines; `#` starts a
comment. Every key is declared in config_keys.py; unknown keys and malformed values are errors
that name the file and line.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from .config_keys import BY_NAME, OPEN_PREFIXES, Key

DEFAULT_NODE_FILE = "/etc/qvd/node.conf"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(Exception):
    """A configuration key or value that cannot be used; the message is for the admin."""


def key_definition(name: str) -> Key | None:
    """The declared key, a free-form Key for open prefixes, or None if unknown."""
    if name in BY_NAME:
        return BY_NAME[name]
    if name.startswith(OPEN_PREFIXES) and len(name) > len(name.split(".")[0]) + 1:
        return Key(name, None, "str", "free-form")
    return None


def validate(name: str, value: str) -> str:
    """Return the normalized value, or raise ConfigError naming the key and what is wrong."""
    key = key_definition(name)
    if key is None:
        raise ConfigError(f"unknown configuration key '{name}'")
    value = value.strip()
    kind = key.type
    try:
        if kind == "int":
            return str(int(value))
        if kind == "float":
            number = float(value)
            if number < 0:
                raise ValueError
            return value
        if kind == "port":
            port = int(value)
            if not 0 < port < 65536:
                raise ValueError
            return str(port)
        if kind == "bool":
            low = value.lower()
            if low in _TRUE:
                return "1"
            if low in _FALSE:
                return "0"
            raise ValueError
        if kind == "ip":
            return str(ipaddress.IPv4Address(value))
        if kind.startswith("enum:"):
            choices = kind[5:].split("|")
            if value not in choices:
                raise ConfigError(f"{name}: '{value}' is not one of {', '.join(choices)}")
            return value
    except ValueError:
        wanted = {"int": "an integer", "float": "a non-negative number",
                  "port": "a port number (1-65535)", "bool": "a boolean (1/0, true/false)",
                  "ip": "an IPv4 address"}[kind]
        raise ConfigError(f"{name}: expected {wanted}, got '{value}'") from None
    return value


def parse_node_file(path: str) -> dict[str, str]:
    """Parse `key = value` lines; raise ConfigError with file:line on the first bad line."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"{path}:{number}: expected 'key = value', got '{line}'")
        try:
            values[name] = validate(name, value)
        except ConfigError as exc:
            raise ConfigError(f"{path}:{number}: {exc}") from None
    return values


def node_file_path() -> str:
    return os.environ.get("QVD_CONFIG") or DEFAULT_NODE_FILE


def load_node_values() -> dict[str, str]:
    """Values of the node file; a missing default file means 'defaults only'."""
    path = node_file_path()
    if "QVD_CONFIG" not in os.environ and not os.path.exists(path):
        return {}
    return parse_node_file(path)


@dataclass
class Config:
    """One layered view; `db_global` and `db_tenant` come from the `configs` table."""
    node: dict[str, str] = field(default_factory=dict)
    db_global: dict[str, str] = field(default_factory=dict)
    db_tenant: dict[str, str] = field(default_factory=dict)
    # qvd-hkd's own address on the VM network, from its host row (hosts.vm_address) at start;
    # None: vm.network.gateway, else the network's first address (hkd/backends/bridge.py)
    vm_address: str | None = None

    def lookup(self, name: str) -> tuple[str | None, str]:
        """(value, source) where source is tenant, global, node or default."""
        key = key_definition(name)
        if key is None:
            raise ConfigError(f"unknown configuration key '{name}'")
        for source, layer in (("tenant", self.db_tenant), ("global", self.db_global),
                              ("node", self.node)):
            if name in layer:
                return layer[name], source
        return key.default, "default"

    def get(self, name: str) -> str | None:
        return self.lookup(name)[0]

    def get_int(self, name: str) -> int:
        return int(self.get(name) or 0)

    def get_float(self, name: str) -> float:
        return float(self.get(name) or 0)

    def get_bool(self, name: str) -> bool:
        return (self.get(name) or "0") in _TRUE

    @property
    def home(self) -> str:
        """QVD_HOME: the environment wins over the node file."""
        return os.path.abspath(os.environ.get("QVD_HOME") or self.get("path.home"))


def load() -> Config:
    """Defaults and the node file; DB layers are added by db.settings when a session exists."""
    return Config(node=load_node_values())
