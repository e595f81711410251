#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    # Whatever a command writes (the SQLite database, secrets, runportal's children's files)
    # is the portal's alone: portal/private_files.py.
    from portal.private_files import set_private_umask

    set_private_umask()
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
