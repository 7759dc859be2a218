"""Dagster resources: thin configuration that hands out `genixer` objects."""

from resources.models import MLLMBackend, ModelRole
from resources.settings import SETTINGS, GenixerSettings
from resources.training import TrainOverrides

__all__ = ["SETTINGS", "GenixerSettings", "MLLMBackend", "ModelRole", "TrainOverrides"]
