"""Sample data, synthetic fields and SDSS access (placeholder until written)."""
