"""AeroGrid in a cluster: the App and Tenant resources, the operator, the in-cluster
catalog, the Kubernetes and Istio objects they render, and the promote client."""
