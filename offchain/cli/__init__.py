"""The ``cvm-cli`` command line: a root group that discovers each package's commands."""
