"""Print qvd-api's OpenAPI document (checked in as docs/openapi.json; a test compares it with
the one the server serves): python -m qvd.api.openapi > docs/openapi.json"""
import json

from qvd.db.config import Config

from .app import create_app

if __name__ == "__main__":
    print(json.dumps(create_app(Config(), None).openapi(), indent=1, sort_keys=True))
