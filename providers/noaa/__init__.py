"""NOAA / National Weather Service active alerts (type ``NOAA_WEATHER``)."""

from providers.noaa.connector import NoaaConfig, create_noaa_weather_connector
from providers.noaa.schema import NoaaAlert

__all__ = ["NoaaAlert", "NoaaConfig", "create_noaa_weather_connector"]
