"""Credits: the ledger, top-ups, and the billing service."""
