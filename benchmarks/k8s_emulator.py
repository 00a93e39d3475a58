"""A thin hardening of kmock.KubernetesEmulator (kmock 0.8), adapted from
../shared/reference/k8s_emulator.py, so that a real kopf operator and the official kubernetes
client behave as against a real API server for the basics.

Kept for one use only: `benchmarks.operator_bench` measures the operator on it side by side with
the real control plane (what the real API server, etcd and the scheduler cost against an
in-memory store that has none of them). Every test runs on the real control plane
(tests/controlplane/).

Adds: uid / resourceVersion (global counter) / creationTimestamp / generation / namespace-from-URL,
generateName, 201 on create, optimistic concurrency (JSON-patch `test` -> 422, stale
metadata.resourceVersion in a merge patch -> 409), PUT (replace), label & field selectors on
list/watch, `?resourceVersion=` on watch (skips the replay of already-seen objects),
`timeoutSeconds` on watch, the /api/v1/namespaces path and the /api/v1 groupVersion (both broken in kmock 0.8).
"""

import asyncio
import copy
import datetime
import itertools
import re
import secrets
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, parsing

# --- kmock 0.8 bug: '/api/v1/namespaces' and '/api/v1/namespaces/NAME' raise ValueError in parse_path.
_orig_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    parts = path.strip("/").split("/")
    namespaces_path = parts[:1] == ["api"] and len(parts) >= 3 and parts[2] == "namespaces"
    if namespaces_path and (len(parts) in (3, 4) or (len(parts) == 5 and parts[4] in ("status", "finalize"))):
        return parsing.ParsedPath(
            group="",
            version=parts[1],
            plural="namespaces",
            name=parts[3] if len(parts) >= 4 else None,
            subresource=parts[4] if len(parts) == 5 else None,
        )
    return _orig_parse_path(path)


parsing.parse_path = _parse_path

_rv = itertools.count(1000)


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def match_labels(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for raw_term in re.split(r",(?![^()]*\))", selector):
        term = raw_term.strip()
        if m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            ok = labels.get(key) in vals if op == "in" else labels.get(key) not in vals
        elif m := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", term):
            key, op, val = m.groups()
            ok = (labels.get(key) == val) if op != "!=" else (labels.get(key) != val)
        elif term.startswith("!"):
            ok = term[1:] not in labels
        else:
            ok = term in labels
        if not ok:
            return False
    return True


def match_fields(obj: dict, selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        m = re.fullmatch(r"\s*([\w.]+)\s*(==|=|!=)\s*(.*?)\s*", term)
        if not m:
            raise kmock.KubernetesError(status=400, reason="BadRequest", message=f"bad field selector {term!r}")
        path, op, val = m.groups()
        actual = _get(obj, path)
        actual = "" if actual is None else str(actual)
        if (actual == val) != (op != "!="):
            return False
    return True


@attrs.define(kw_only=True)
class RealisticEmulator(kmock.KubernetesEmulator):
    def _matches(self, request: kmock.Request, obj: dict) -> bool:
        return match_labels(
            (obj.get("metadata") or {}).get("labels") or {}, request.params.get("labelSelector")
        ) and match_fields(obj, request.params.get("fieldSelector"))

    _in_flight: set = attrs.field(factory=set, init=False)
    """ids of the requests being handled now."""

    def _forget_finished_requests(self) -> None:
        """kmock 0.8 keeps every request for assertions and matches each new one against the whole
        history (a create took 10 ms at 100 objects, 130 ms at 600). The tests here assert on
        objects, not on request logs: only the requests being handled are kept (kmock needs a
        request in its log while it matches it)."""
        self._requests[:] = [known for known in self._requests if id(known) in self._in_flight]

    def _KubernetesEmulator__get_objs(self, request: kmock.Request, strict: bool) -> list:  # noqa: N802 (kmock's private name)
        """kmock 0.8 finds even one named object by scanning every object it holds (events included),
        which made each GET and PATCH cost O(objects); a named request is looked up directly."""
        if request.name is not None and request.resource is not None:
            found = self._objects._objects.get((request.resource, request.namespace, request.name))
            if found is not None:
                return [found]
        return [
            obj
            for (resource, namespace, name), obj in self._objects.items()
            if resource == request.resource
            and (namespace == request.namespace if strict else request.namespace in (None, namespace))
            and (request.name is None or name == request.name)
        ]

    async def _handle(self, request: kmock.Request):
        self._in_flight.add(id(request))
        try:
            return await self._handle_in_flight(request)
        finally:
            self._in_flight.discard(id(request))
            self._forget_finished_requests()

    async def _handle_in_flight(self, request: kmock.Request):
        if request.resource is not None and request.name is not None and request.method == enums.method.PUT:
            # PUT (replace) -> a JSON-patch replacing the whole document (status kept for non-/status PUTs).
            key = (request.resource, request.namespace, request.name)
            if key not in self.objects or self.objects[key].deleted:
                raise kmock.KubernetesObjectNotFoundError()
            current = dict(self.objects[key].raw)
            new = copy.deepcopy(request.data)
            new.setdefault("metadata", {})
            for k in ("uid", "creationTimestamp", "namespace", "name", "finalizers", "deletionTimestamp"):
                if k in current.get("metadata", {}) and k not in new["metadata"]:
                    new["metadata"][k] = current["metadata"][k]
            if request.subresource == "status":
                new = {**current, "status": new.get("status")}
            elif "status" in current:
                new["status"] = current["status"]
            sent_rv = request.data.get("metadata", {}).get("resourceVersion")
            if sent_rv and sent_rv != current.get("metadata", {}).get("resourceVersion"):
                raise kmock.KubernetesError(status=409, reason="Conflict", message="the object has been modified")
            new["metadata"]["resourceVersion"] = str(next(_rv))
            async with self._lock:
                self.objects[key].patch([{"op": "replace", "path": "", "value": new}])  # JSON-patch: replace the root
                await self._buses[request.resource].put({"type": "MODIFIED", "object": self.objects[key].raw})
            return aiohttp.web.json_response(self.objects[key].raw)

        if request.resource is not None and request.action == enums.action.CREATE and isinstance(request.data, dict):
            md = request.data.setdefault("metadata", {})
            if request.namespace:
                md.setdefault("namespace", request.namespace)
            if not md.get("name") and md.get("generateName"):
                md["name"] = md["generateName"] + secrets.token_hex(3)
            md.setdefault("uid", str(uuid.uuid4()))
            md.setdefault("creationTimestamp", datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
            md["generation"] = 1
            md["resourceVersion"] = str(next(_rv))
            key = (request.resource, md.get("namespace"), md.get("name"))
            if key in self.objects and self.objects[key].deleted:
                self.objects[key].history = []  # re-creation: start a fresh history

        elif request.resource is not None and request.action == enums.action.UPDATE:
            key = (request.resource, request.namespace, request.name)
            if key in self.objects and not self.objects[key].deleted:
                current = self.objects[key].raw
                cur_rv = current.get("metadata", {}).get("resourceVersion")
                new_rv = str(next(_rv))
                if isinstance(request.data, list):  # JSON patch
                    for op in request.data:
                        if (
                            op.get("op") == "test"
                            and op.get("path") == "/metadata/resourceVersion"
                            and op.get("value") != cur_rv
                        ):
                            raise kmock.KubernetesError(status=422, reason="Invalid", message="test operation failed")
                    request.data.append({"op": "add", "path": "/metadata/resourceVersion", "value": new_rv})
                elif isinstance(request.data, dict):  # merge patch
                    sent_rv = (request.data.get("metadata") or {}).get("resourceVersion")
                    if sent_rv and sent_rv != cur_rv:
                        raise kmock.KubernetesError(
                            status=409, reason="Conflict", message="the object has been modified"
                        )
                    request.data.setdefault("metadata", {})
                    if request.data["metadata"] is None:
                        request.data["metadata"] = {}
                    request.data["metadata"]["resourceVersion"] = new_rv
                    if "spec" in request.data and request.subresource != "status":
                        request.data["metadata"]["generation"] = (
                            int(current.get("metadata", {}).get("generation", 1)) + 1
                        )

        response = await super()._handle(request)
        if request.action == enums.action.CREATE and response.status == 200 and not response.prepared:
            response.set_status(201)
        return response

    async def _serve_version(self, request):
        # kmock 0.8 answers /api/v1 with groupVersion '/v1' -> kubectl cannot map core kinds (Pod, Node...).
        result = await super()._serve_version(request)
        if isinstance(result, dict) and str(result.get("groupVersion", "")).startswith("/"):
            result["groupVersion"] = result["groupVersion"][1:]
        return result

    async def _serve_list(self, request):
        result = await super()._serve_list(request)
        result["items"] = [o for o in result["items"] if self._matches(request, o)]
        result["metadata"] = {"resourceVersion": str(next(_rv))}
        info = self.resources._resources.get(request.resource)
        kind = info.kind if info is not None and info.kind else "List"
        res = request.resource
        result["kind"] = kind if kind == "List" else f"{kind}List"
        result["apiVersion"] = f"{res.group}/{res.version}" if res.group else res.version
        return result

    async def _render_error(self, exc):
        # Standard Status reasons: kubectl 1.20 (and other Go clients) test reason == 'NotFound' / 'AlreadyExists'.
        if isinstance(exc, kmock.KubernetesNotFoundError):
            exc = kmock.KubernetesError(status=404, reason="NotFound", message=exc.message)
        elif isinstance(exc, kmock.KubernetesError) and exc.status == 409 and exc.reason == "Object Already Exists":
            exc = kmock.KubernetesError(status=409, reason="AlreadyExists", message=exc.message)
        return await super()._render_error(exc)

    async def _serve_watch(self, request):
        since = request.params.get("resourceVersion")
        since = int(since) if since and since.isdigit() else None
        timeout = float(request.params.get("timeoutSeconds") or 0) or None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        agen = super()._serve_watch(request).__aiter__()
        while True:
            try:
                if deadline is None:
                    ev = await agen.__anext__()
                else:
                    ev = await asyncio.wait_for(agen.__anext__(), max(0.0, deadline - loop.time()))
            except (StopAsyncIteration, asyncio.TimeoutError):
                await agen.aclose()
                return
            if isinstance(ev, dict) and isinstance(ev.get("object"), dict):
                obj = ev["object"]
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if ev.get("type") == "ADDED" and since is not None and rv and rv.isdigit() and int(rv) <= since:
                    continue  # already seen by the client's LIST
                if not self._matches(request, obj):
                    continue
            yield ev
