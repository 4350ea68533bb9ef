"""Data access: the only package that talks to DynamoDB, S3, KMS and Secrets Manager."""
