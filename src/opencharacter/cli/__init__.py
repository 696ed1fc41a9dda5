"""The `opencharacter` command line: one module per command group, sharing one set of model options."""
