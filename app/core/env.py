"""Typed reads of deploy-time settings from the environment.

The deploy writes every setting into one env file that systemd loads; a local run
exports them by hand. Values that production cannot run without are collected by
`Env.required()` and reported together, in one line, by `Env.check()`.
"""

import os

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


class SettingsError(ImproperlyConfigured):
    """A deploy-time setting is missing or malformed; the message names it in one line."""


class Env:
    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.missing = []

    def str(self, name, default=""):
        return self.environ.get(name, default)

    def bool(self, name, default=False):
        raw = self.environ.get(name)
        if raw is None:
            return default
        value = raw.strip().lower()
        if value in TRUE:
            return True
        if value in FALSE:
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no, on/off)")

    def int(self, name, default, minimum=None):
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name}={raw!r} is not an integer") from None
        if minimum is not None and value < minimum:
            raise SettingsError(f"{name}={raw!r} must be at least {minimum}")
        return value

    def list(self, name, default=()):
        raw = self.environ.get(name)
        if raw is None:
            return list(default)
        return [item.strip() for item in raw.split(",") if item.strip()]

    def required(self, name, *, production, fallback):
        """The value of `name`; in production its absence is recorded, elsewhere `fallback` stands in."""
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if production:
            self.missing.append(name)
        return fallback

    def check(self):
        if self.missing:
            names = ", ".join(self.missing)
            raise SettingsError(
                f"missing required setting(s) with DEBUG off: {names} "
                "(set them in the environment; the deploy writes them to the app's env file)"
            )
