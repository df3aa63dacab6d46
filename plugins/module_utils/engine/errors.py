# -*- coding: utf-8 -*-
# Copyright: netpol.fleet contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Input errors that name where the bad value came from.

Every check on user input (manifests, inventory variables, selectors) reports an
InputError; callers collect them all and raise one InputErrors, so users fix
everything in one round and nothing is applied while anything is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Tuple


@dataclass(frozen=True)
class InputError:
    """source: file or inventory variable; obj: namespace/name; field: the path inside it."""

    source: str
    obj: str
    field: str
    message: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.source, self.obj, self.field, self.message) if part)


class InputErrors(Exception):
    """One or more InputError, reported together."""

    def __init__(self, errors: Iterable[InputError]):
        self.errors: Tuple[InputError, ...] = tuple(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    def __reduce__(self):
        # Rebuilt from the errors, not from the message, when it crosses a process boundary.
        return InputErrors, (self.errors,)

    def located(self, source: str, obj: str = "") -> "InputErrors":
        """The same errors, with source and obj filled in where the raiser did not know them."""
        return InputErrors(
            InputError(e.source or source, e.obj or obj, e.field, e.message) for e in self.errors
        )


class Problems:
    """Collects errors of one object while it is read, so all of them are reported at once."""

    def __init__(self, source: str = "", obj: str = ""):
        self.source, self.obj = source, obj
        self.errors: List[InputError] = []
        self.warnings: List[str] = []

    def warn(self, field: str, message: str) -> None:
        self.warnings.append(str(InputError(self.source, self.obj, field, message)))

    def add(self, field: str, message: str) -> None:
        self.errors.append(InputError(self.source, self.obj, field, message))

    def extend(self, errors: InputErrors) -> None:
        self.errors.extend(errors.located(self.source, self.obj).errors)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            raise InputErrors(self.errors)
