"""The alerter: rules, the decision to notify, messages and the notification log's protocol."""
