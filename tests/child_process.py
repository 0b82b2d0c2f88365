"""A service a test runs as a real process, so it can be killed the way a machine loses it."""

from __future__ import annotations

import os
import signal
import subprocess


class ChildProcess:
    """Holds the running process (None when stopped); subclasses start it."""

    label = "the process"
    _process: subprocess.Popen[bytes] | None = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, whatever it had in flight is simply gone."""
        assert self._process is not None, f"{self.label} is not running"
        os.kill(self._process.pid, signal.SIGKILL)
        self._process.wait(timeout=10)
        self._process = None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within 15 s."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        self._process = None
