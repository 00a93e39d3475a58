"""RaaS cluster side: the job model, the scheduler core and the Kubernetes operator."""
