"""`spoofrl serve`: detection HTTP API (FastAPI) and a web page to upload or record a clip."""
from spoofrl.serve.app import ServeLimits, create_app

__all__ = ["ServeLimits", "create_app"]
