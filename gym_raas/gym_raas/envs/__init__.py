"""Gymnasium environments of RaaS."""
