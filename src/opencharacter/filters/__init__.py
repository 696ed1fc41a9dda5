"""Data filters applied between synthesis and training; each reports what it removed and why."""

from opencharacter.filters.apply import FilterReport, apply_filters

__all__ = ["FilterReport", "apply_filters"]
