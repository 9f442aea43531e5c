#!/usr/bin/env python3
"""Django's command-line utility for the nurcrm realtime app."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "core.settings")
    from django.core.management import execute_from_command_line

    from core.env import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as exc:
        # One line naming what is missing, not a traceback: operators read this in a deploy log.
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
