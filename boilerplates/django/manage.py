#!/usr/bin/env python3
"""Django's command-line utility for administrative tasks."""
import os
import signal
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # As a container's main process, Python would ignore SIGTERM: stop on it instead.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
