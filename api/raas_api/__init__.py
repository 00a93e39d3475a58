"""RaaS front door: job stores, the local platform, the REST API and the web page."""
