"""Subcommands the platform adds to the ``raas`` command (entry point group ``raas.cli``)."""
