"""The channels that deliver messages, behind one small interface."""
