"""cotlab.cli: the cotctl command line."""
