"""Naming, selecting and listing cotlab resources, on a cluster or in local state."""
