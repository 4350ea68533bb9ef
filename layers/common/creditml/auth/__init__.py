"""Accounts and authentication: password hashing, JWTs, roles, and the auth service."""
