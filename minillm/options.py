"""OptionError: a rule between options, written once, reported in the caller's words.

TrainConfig and the model configs raise it; from Python its message names the options as
``nsp=True``, and the command line reports the same rule as ``--nsp`` (cli.py renders it).
Machinery, not part of the lesson.
"""

from __future__ import annotations

import string


class OptionError(ValueError):
    """A rule on options broken (TrainConfig's, a model config's): the rule is written once and
    its message names the options as Python does (``nsp=True``) or as the command line does
    (``--nsp``), so the CLI reports the rule instead of writing it again in flags.

    In ``template`` an option is ``{name}``, written with its value here, or ``{name:text}``,
    written with the value ``text`` (what the rule needs, or advice: ``{pool:2000}``).
    ``values`` are the options' values; str() is ``render`` in Python's words."""

    def __init__(self, template, **values):
        self.template, self.values = template, values
        super().__init__(self.render(lambda name, value: f"{name}={value!r}"))

    def render(self, setting):
        """The message, each option written as ``setting(name, value)``."""
        return _Options(setting).vformat(self.template, (), self.values)


class _Options(string.Formatter):
    """Fills OptionError's template: each field is an option, written by ``setting``."""

    def __init__(self, setting):
        self.setting = setting

    def get_value(self, name, args, values):
        return name, values[name]

    def format_field(self, option, spec):
        name, value = option
        if spec:  # a value the template gives, quoted in Python only if the option's are strings
            value = spec if isinstance(value, str) else _Verbatim(spec)
        return self.setting(name, value)


class _Verbatim(str):
    """A value written as it is, even by repr (``pool=N``, not ``pool='N'``)."""

    __repr__ = str.__str__
