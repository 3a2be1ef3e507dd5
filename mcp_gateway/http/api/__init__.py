"""The REST API mounted at /api: one module per resource, assembled by `http/api/app.py`."""
