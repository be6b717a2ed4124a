"""User-facing errors.

Every problem a user can cause (bad config key, unknown name, unreadable image, wrong checkpoint,
corrupt download) is raised as a :class:`DpirError` whose message names the file or key and says
what to do.  The command line prints that message on one line and exits with status 2, never a
traceback.  Programming errors stay ordinary exceptions.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class DpirError(Exception):
    """An error caused by the user's input, with a message that says how to fix it."""


class UnknownNameError(DpirError, KeyError):
    """A name (method, metric, network, dataset, ...) that is not registered."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        choices = sorted(choices)
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        msg = f"unknown {kind} {name!r}.{hint} Known {kind}s: {', '.join(choices)}."
        super().__init__(msg)
        self.kind, self.name, self.choices = kind, name, choices

    def __str__(self) -> str:  # KeyError would otherwise add quotes around the message
        return self.args[0]


class MetricUnavailable(DpirError):
    """A metric that cannot be computed here (typically: weights not cached and no network).

    ``reason`` says why, ``fix`` is the command that makes it available; both go into the report's
    footnote under the table that shows "n/a".
    """

    def __init__(self, metric: str, reason: str, fix: str):
        super().__init__(f"metric {metric!r} is unavailable: {reason} Fix: {fix}")
        self.metric, self.reason, self.fix = metric, reason, fix
