"""Pydantic request and response schemas; the OpenAPI document is built from them."""
