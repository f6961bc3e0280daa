"""cotlab.operator: kopf handlers over pure builders (resource -> manifests) and reducers (children -> status)."""
