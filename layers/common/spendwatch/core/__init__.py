"""The core model: config, snapshot and alert models, exact money, errors, redaction, logging."""
