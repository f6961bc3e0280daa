"""cotctl's commands, one module each (`cotlab.cli.main` composes them): options, what to read, what to print."""
