"""Manifest files: reading them, rendering kustomizations, what applying one would change, a new experiment's
repository."""
