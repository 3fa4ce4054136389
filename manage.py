#!/usr/bin/env python
"""Django's command-line utility for agentconfig."""

import os
import sys


def main() -> None:
    # The development settings are the default here; production sets DJANGO_SETTINGS_MODULE.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentconfig.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
