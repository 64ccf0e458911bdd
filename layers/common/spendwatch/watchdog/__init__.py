"""The watchdog: tells an organization's channels when its newest snapshot is too old."""
