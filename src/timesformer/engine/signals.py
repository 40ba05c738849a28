"""Signals as requests: a handler that only records the signal, so the loop stops at a safe point.

An exception raised straight from a signal handler can land anywhere, including inside a fork's
at-fork callback while DataLoader workers start, where Python prints "Exception ignored" and drops
it: the Ctrl-C is lost. Recording the signal and acting on it between steps or batches cannot be lost.
"""

from __future__ import annotations

import signal


class StopRequest:
    """`with StopRequest() as stop:` records the first SIGTERM / SIGINT in `stop.signal_name`.

    A second signal of the same kind acts at once (the previous handler: KeyboardInterrupt or
    the default SIGTERM), for a process that does not reach its next safe point, except with
    `repeated_is_one=True` (under torchrun): there every worker receives each signal twice, from
    the terminal's or the scheduler's process group and again from torchrun, which forwards it
    and kills the workers itself if they do not end in time.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
                 repeated_is_one: bool = False):  # fmt: skip
        self.signals = signals
        self.repeated_is_one = repeated_is_one
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame):
        self.signal_name = self.signal_name or signal.Signals(signum).name
        if not self.repeated_is_one:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> StopRequest:
        for signum in self.signals:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def raise_if_interrupted(self) -> None:
        """KeyboardInterrupt once SIGINT arrived: for loops that stop without saving anything."""
        if self.signal_name == "SIGINT":
            raise KeyboardInterrupt
