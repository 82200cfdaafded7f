"""The front door: the command line, TOML configurations and matplotlib figures."""
