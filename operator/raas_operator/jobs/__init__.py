"""The RaasJob contract: spec, status, phases and failure classes."""
