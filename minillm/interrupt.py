"""Ctrl-C on the command line: one line and exit status 130, at any moment, even twice.

The first Ctrl-C raises KeyboardInterrupt, which cli.main turns into ``minillm: interrupted``
and status 130 (during training, train.py's own handler instead finishes the step and writes
the checkpoint). Any later Ctrl-C is ignored, so that a second one cannot cut the exit short
with a traceback. Before cli.main runs (while Python is still loading minillm), there is nothing
to clean up: the process prints the same line and ends at once.

``__main__.py`` installs the handler as its first statement, importing only this small module
and the interpreter's built-in ``_signal`` and ``sys`` first, so that the window in which a
Ctrl-C is still Python's own (a traceback) is Python's start-up alone.
"""

import _signal
import os
import sys

main_running = False  # set by cli.cli once main() runs: from then on a Ctrl-C raises
interrupted = False  # set by the first Ctrl-C


def on_ctrl_c(signum, frame):
    """The SIGINT handler (see the module docstring)."""
    global interrupted
    interrupted = True
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    if not main_running:  # still loading minillm: nothing to clean up
        os.write(2, b"minillm: interrupted\n")
        os._exit(130)
    raise KeyboardInterrupt


def quiet_unraisable(unraisable):
    """sys.unraisablehook: a Ctrl-C that lands in a callback Python cannot raise from (the
    import system's lock cleanup, during NumPy's import) is the interrupt already being handled,
    not an error to print."""
    if not isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.__unraisablehook__(unraisable)


def install():
    """Handle Ctrl-C as the module docstring says, from now on (main thread only)."""
    _signal.signal(_signal.SIGINT, on_ctrl_c)
    sys.unraisablehook = quiet_unraisable
