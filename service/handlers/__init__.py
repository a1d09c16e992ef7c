"""HTTP handlers: thin, they authenticate, validate and hand work to the hub or the broker."""
