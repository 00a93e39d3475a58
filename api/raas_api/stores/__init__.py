"""Where jobs are kept: one interface, a SQLite implementation (local platform) and, later, Kubernetes."""
