"""The ``kubernetes`` client for the web API: its pod's service account in a cluster, else the kubeconfig."""

from __future__ import annotations

from kubernetes import client, config


def kubernetes_api_client() -> client.ApiClient:
    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return client.ApiClient(configuration)
