"""Dagster resources: thin configuration that hands out `genixer` objects."""

from resources.models import MLLMBackend
from resources.settings import GenixerSettings

__all__ = ["GenixerSettings", "MLLMBackend"]
