"""The base layer: what every app needs and nothing above it (docs/architecture.md):
actors, errors, reasons, bucketing, append-only, the change feed, audit records,
people and roles, outbound HTTP, parsing limits, and the admin page plumbing."""
