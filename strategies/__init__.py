"""Hypothesis strategies for promo-sandbox sessions (filled in by the strategies module)."""
