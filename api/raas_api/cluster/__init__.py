"""The web API on a Kubernetes cluster (RaasJobs and Robots; the operator runs the jobs)."""
