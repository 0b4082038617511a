"""Bulk changes of many configs at once (JSON Merge Patch), and their undo."""
