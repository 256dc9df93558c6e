"""Catalog readers (placeholder until written)."""
