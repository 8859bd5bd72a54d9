"""The local AWS stack: DynamoDB Local, and moto's server for S3, STS (trust policies enforced),
IAM, Organizations, SQS and ACM PCA with the audit-report operations moto lacks, fault
injection and seed data (see docs/local-stack.md)."""
