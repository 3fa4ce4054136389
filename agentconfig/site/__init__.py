"""The UI layer: pages that bring several apps together (agents, versions, requests,
the timeline, people) and the demo data. The top of the import graph
(docs/architecture.md): it may import any app, and nothing imports it."""
