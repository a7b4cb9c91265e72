"""Stage: what one step of diagnose() could do, so that a failing step is reported, not raised.

diagnose() runs in stages: each method it runs, the mode search, the mass estimate and each
method's checks. A stage that cannot do its job records why and the others go on; a verdict
never rests on a stage that failed (no mass flag without masses, for instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Stage", "STATUSES", "attempt"]

STATUSES = ("ok", "warning", "failed")  # warning: done, with a caveat the reader must know


@dataclass(frozen=True)
class Stage:
    """One stage of diagnose(): ``name`` (``"run svgd"``, ``"modes"``, ``"masses"``,
    ``"check nuts"``), ``status`` (one of :data:`STATUSES`) and, unless ok, the ``reason``."""

    name: str
    status: str = "ok"
    reason: str = ""

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}.")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        return f"{self.name}: {self.status}" + (f" - {self.reason}" if self.reason else "")


def attempt(name: str, fn: Callable[..., Any], *args, **kwargs) -> tuple[Any, Stage]:
    """``(fn(*args, **kwargs), Stage(name))``, or ``(None, Stage(name, "failed", reason))`` when
    ``fn`` raises: the exception's message is the reason the report gives (with the exception's
    type for anything but the ValueError and FloatingPointError the package raises on purpose)."""
    try:
        return fn(*args, **kwargs), Stage(name)
    except (ValueError, FloatingPointError) as err:  # the package's own "cannot do this" errors
        return None, Stage(name, "failed", str(err))
    except Exception as err:  # noqa: BLE001 - any other failure of one stage is reported, never raised
        return None, Stage(name, "failed", f"{type(err).__name__}: {err}")
