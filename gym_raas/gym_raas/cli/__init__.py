"""The ``raas`` command line: one module per subcommand."""
