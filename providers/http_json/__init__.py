"""Any JSON API by configuration alone (type ``HTTP_JSON``)."""

from providers.http_json.config import HttpJsonConfig
from providers.http_json.connector import create_http_json_connector
from providers.http_json.schema import HttpJsonItem

__all__ = ["HttpJsonConfig", "HttpJsonItem", "create_http_json_connector"]
