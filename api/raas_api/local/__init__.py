"""The local platform: the whole of RaaS in one process, with simulated or virtual robots."""
