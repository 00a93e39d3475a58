"""A stand-in kubelet for the Kubernetes emulator: it plays nodes and runs their pods for real.

* `kubelet.node`: `StandInKubelet` (binds pods to the `Node` that accepts them, runs them, patches
  their status, serves their logs, stops deleted pods), `Node` and `Egress`;
* `kubelet.podman`: `PodmanRuntime`, real containers — the pod spec's image, command,
  environment, security context, resource limits and volumes translated to podman by
  `kubelet.podman_args`, no network but what `kubelet.egress` relays;
* `kubelet.runtime`: what a runtime is given and returns;
* `kubelet.environment`, `kubelet.volumes`, `kubelet.status`, `kubelet.quantities`: the parts of
  a kubelet's work that do not depend on the runtime.

Tests: tests/kubelet/test_podman_kubelet.py (pod by pod) and
tests/raas_operator/test_operator_end_to_end.py (with the operator).
"""
