"""The poller: one organization's poll of OpenAI's admin API (client, collection, the Lambda app)."""
