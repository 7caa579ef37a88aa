"""Placeholder: built by its own issue (see README)."""
