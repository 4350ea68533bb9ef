"""CreditML: serverless ML predictions with prepaid-credit billing (the shared layer)."""

__version__ = "0.2.0"
