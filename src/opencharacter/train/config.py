"""Training settings live with every other default in `opencharacter.config`."""

from opencharacter.config import TrainConfig

__all__ = ["TrainConfig"]
