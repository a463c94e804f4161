"""``python -m minillm``: the command line of cli.py, with Ctrl-C handled from the first line."""

from minillm import interrupt

interrupt.install()

from minillm.cli import cli  # noqa: E402  (after the handler: a Ctrl-C while loading is handled)

cli()
