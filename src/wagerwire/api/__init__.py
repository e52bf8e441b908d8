"""REST on FastAPI: routes per resource, JSON errors, OpenAPI at /openapi.json, docs at /docs."""
