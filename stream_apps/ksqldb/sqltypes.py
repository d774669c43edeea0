"""ksqlDB's SQL types: a name and, for ARRAY, MAP, STRUCT and DECIMAL, its parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SqlType:
    name: str  # STRING INT BIGINT DOUBLE BOOLEAN DECIMAL ARRAY MAP STRUCT TIMESTAMP DATE TIME BYTES
    params: tuple[Any, ...] = ()  # ARRAY: (item,), MAP: (key, value), STRUCT: ((name, type), ...)

    def __str__(self) -> str:
        if self.name == "ARRAY":
            return f"ARRAY<{self.params[0]}>"
        if self.name == "MAP":
            return f"MAP<{self.params[0]}, {self.params[1]}>"
        if self.name == "STRUCT":
            return "STRUCT<" + ", ".join(f"`{n}` {t}" for n, t in self.params) + ">"
        if self.name == "DECIMAL" and self.params:
            return f"DECIMAL({self.params[0]}, {self.params[1]})"
        return self.name

    def field_type(self, name: str) -> SqlType | None:
        if self.name != "STRUCT":
            return None
        for n, t in self.params:
            if n == name:
                return t
        for n, t in self.params:
            if n.upper() == name.upper():
                return t
        return None


STRING = SqlType("STRING")
INT = SqlType("INTEGER")
BIGINT = SqlType("BIGINT")
DOUBLE = SqlType("DOUBLE")
BOOLEAN = SqlType("BOOLEAN")
UNKNOWN = SqlType("STRING")  # what we say when inference cannot tell
