"""Compose files -> ServiceSpecs for `shoal stack deploy`: load (bounded YAML), interpolate
`${VAR}`, validate the keys a cluster can honour, and convert (`to_specs`)."""

NAMESPACE_LABEL = "com.docker.stack.namespace"
"""The label that names a service's stack (as docker's)."""
