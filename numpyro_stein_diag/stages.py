"""Stages: what each step of diagnose() could do, so that a failing step is reported, not raised.

diagnose() runs in stages: each method it runs, the check that the log density is smooth, the
mode search, the mass estimate, each method's checks and repair. A stage that cannot do its job
records why and the others go on; a verdict never rests on a stage that failed (no mass flag
without masses, for instance).
:class:`StageLog` is the one place that times the stages, catches their failures and moves
the progress bar, so diagnose() reads as its steps.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal, get_args

from tqdm.auto import tqdm

__all__ = ["Stage", "StageLog", "Status"]

Status = Literal["ok", "warning", "failed"]  # warning: done, with a caveat the reader must know
STATUSES: tuple[str, ...] = get_args(Status)
Step = Literal["run", "smoothness", "modes", "masses", "check", "repair"]  # run, check and repair are per method
STEPS: tuple[str, ...] = get_args(Step)


@dataclass(frozen=True)
class Stage:
    """One stage of diagnose(): the ``step`` (one of :data:`STEPS`), the ``method`` it was for
    (``""`` for the mode search and the masses), its ``status`` (one of :data:`STATUSES`), the
    ``reason`` unless ok, and the wall-clock ``seconds`` it took (NaN when not timed)."""

    step: Step
    method: str = ""
    status: Status = "ok"
    reason: str = ""
    seconds: float = float("nan")

    def __post_init__(self):
        if self.step not in STEPS:
            raise ValueError(f"step must be one of {STEPS}, got {self.step!r}.")
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}.")

    @property
    def name(self) -> str:
        """``"modes"``, ``"check nuts"``: the step and the method it was for."""
        return f"{self.step} {self.method}".strip()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __str__(self) -> str:
        return f"{self.name}: {self.status}" + (f" - {self.reason}" if self.reason else "")


@dataclass
class _Outcome:
    """What a stage's body may say before it ends: a caveat (``warn``) or a failure (``fail``)."""

    status: Status = "ok"
    reason: str = ""

    def warn(self, reason: str) -> None:
        self.status, self.reason = "warning", reason

    def fail(self, reason: str) -> None:
        self.status, self.reason = "failed", reason


@dataclass
class StageLog:
    """The stages of one diagnose() call, in order, and its progress bar (``total`` steps).

    ``with log.stage("modes", "searching for modes") as outcome: ...`` (or ``log.stage("check",
    "checking nuts", method="nuts")``) runs a step: its time is
    recorded, ``outcome.warn(reason)`` / ``outcome.fail(reason)`` set its status, and an
    exception inside it is recorded as a failure with the exception's message (with its type
    for anything but the ValueError and FloatingPointError the package raises on purpose)
    instead of propagating (as ``on_error``: a step whose failure leaves the verdict standing,
    such as the repair, is a warning). Code after the block reads the values the block
    assigned, so give them a fallback before it.
    """

    total: int
    progress_bar: bool = True
    stages: list[Stage] = field(default_factory=list)

    def __post_init__(self):
        self._bar = tqdm(total=self.total, desc="diagnose", disable=not self.progress_bar, leave=False)

    @contextmanager
    def stage(self, step: Step, description: str, method: str = "", on_error: Status = "failed") -> Iterator[_Outcome]:
        self._bar.set_description(f"diagnose: {description}")
        outcome, start = _Outcome(), time.perf_counter()
        try:
            yield outcome
        except (ValueError, FloatingPointError) as err:  # the package's own "cannot do this" errors
            outcome.status, outcome.reason = on_error, str(err)
        except Exception as err:  # noqa: BLE001 - any other failure of one stage is reported, never raised
            outcome.status, outcome.reason = on_error, f"{type(err).__name__}: {err}"
        self.stages.append(Stage(step, method, outcome.status, outcome.reason, time.perf_counter() - start))
        self._bar.update()

    def close(self) -> list[Stage]:
        """End the progress bar; the stages, in order."""
        self._bar.close()
        return list(self.stages)
