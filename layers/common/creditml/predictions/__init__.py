"""Billed predictions: validate rows, predict with a cached model, charge once, keep a receipt."""
