"""What runtimes receive: the runtime document (stable and canary payloads, flags, tool
gates), each process's snapshot kept fresh by the change feed, the config, outcomes and
OFREP endpoints, and "what was live at T". Above flags and deployments, below the UI
layer (docs/architecture.md)."""
