from opencharacter.cli.app import entrypoint

entrypoint()
