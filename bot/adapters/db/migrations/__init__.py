"""Alembic environment and versions of the store's schema."""
