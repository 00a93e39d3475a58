"""A stand-in kubelet for the real control plane: it plays nodes and runs their pods for real.

* `kubelet.kubelet`: `StandInKubelet` (one `NodeAgent` per node, each speaking with its own
  client certificate as ``system:node:<name>``), `kubelet.node`: `Node` and `Egress`;
* `kubelet.registration`: the Node object, its Lease and status heartbeats;
* `kubelet.pod_watch`: the node's pods, listed and watched (``spec.nodeName=<node>``);
* `kubelet.pod_runner`: one pod run as a kubelet runs it, its status as Kubernetes writes it;
* `kubelet.log_server`: the kubelet API's ``/containerLogs`` over TLS, for ``kubectl logs``;
  `kubelet.logs`: container logs in the CRI format;
* `kubelet.podman`: `PodmanRuntime`, real containers — the pod spec's image, command,
  environment, security context, resource limits and volumes translated to podman by
  `kubelet.podman_args`, no network but what `kubelet.egress` relays;
* `kubelet.runtime`: what a runtime is given and returns;
* `kubelet.environment`, `kubelet.volumes`, `kubelet.status`, `kubelet.quantities`: the parts of
  a kubelet's work that do not depend on the runtime.

Tests: tests/kubelet/test_kubelet_on_control_plane.py (the node's side of the cluster),
tests/kubelet/test_podman_kubelet.py (pod by pod) and
tests/raas_operator/test_operator_end_to_end.py (with the operator).
"""
