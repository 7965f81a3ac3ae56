"""gridctl's HTTP API (FastAPI, under /api/v1) and its web pages."""

from gridctl.api.app import API_PREFIX, create_app
from gridctl.api.settings import ApiSettings

__all__ = ["API_PREFIX", "ApiSettings", "create_app"]
