"""Performance figures of RaaS, each measured against a peer in the same run (`make bench`)."""
