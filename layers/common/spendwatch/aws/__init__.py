"""AWS adapters and Lambda plumbing: DynamoDB, SSM, environment models, batch responses."""
