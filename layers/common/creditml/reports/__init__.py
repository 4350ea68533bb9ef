"""Usage reports: what the ledger's charged predictions add up to, per caller, publisher
and day (usage), and the daily report."""
