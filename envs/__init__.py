"""Align tasks: sparse- and delayed-reward envs that keep the task contract (see ``core``)."""

from .core import AlignEnv, Potential, State

__all__ = ["AlignEnv", "Potential", "State"]
