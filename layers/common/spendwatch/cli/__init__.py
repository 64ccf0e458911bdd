"""The command line: `spendwatch` (config, poll, check, report, test-alert, verify) and its AWS access."""
