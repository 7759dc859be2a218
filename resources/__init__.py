"""Dagster resources: thin configuration that hands out `genixer` objects."""

from resources.models import MLLMBackend, ModelRole
from resources.settings import SETTINGS, GenixerSettings

__all__ = ["SETTINGS", "GenixerSettings", "MLLMBackend", "ModelRole"]
