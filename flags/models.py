"""Feature flags arrive with the flags issue; the app exists so the layout is stable."""
