"""Reconcile one ModelService: read, build (pure), apply, observe, write status once.

Data flows one way: spec -> desired objects -> server-side apply -> observed state ->
status. Every decision worth a user's attention goes through `_record`, which logs it and
posts an Event on the ModelService.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass

from pydantic import ValidationError

from conch import builders, reasons, status
from conch.api import ModelService, ModelServiceStatus, ModelVersion
from conch.builders import Capabilities, PodSettings
from conch.builders.meta import SERVICE_LABEL, Manifest, selector
from conch.builders.servicemonitor import API_VERSION as SERVICE_MONITOR_API
from conch.errors import ApiError, ConchError, InvalidSpec, ModelVersionNotFound
from conch.kube import MODEL_SERVICE, MODEL_VERSION, OWNED, POD, Applied, Kube
from conch.metrics import OperatorMetrics

log = logging.getLogger("conch.controller")

NOT_READY_POLL = 10.0
"""Seconds between looks at a ModelService that is not Ready yet (pods are not watched)."""

WARNING_REASONS = {
    reasons.MODEL_VERSION_NOT_FOUND,
    reasons.INVALID_SPEC,
    reasons.INSUFFICIENT_GPU,
    reasons.UNSCHEDULABLE,
    reasons.PROGRESS_DEADLINE_EXCEEDED,
}


Key = tuple[str, str, str]
"""(kind, namespace, name): what the work queue holds."""


@dataclass(frozen=True)
class Outcome:
    """What the work queue should do next: look again later, and/or look at other objects."""

    requeue_after: float = 0.0
    touch: tuple[Key, ...] = ()


class Controller:
    def __init__(self, kube: Kube, settings: PodSettings, metrics: OperatorMetrics) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.ready: dict[tuple[str, str], str] = {}
        self.serving: dict[tuple[str, str], str] = {}  # (namespace, service) -> ModelVersion
        metrics.watch_conditions(lambda: dict(self.ready))

    def reconcile(self, key: Key) -> Outcome:
        kind, namespace, name = key
        if kind == MODEL_VERSION.kind:
            return self._reconcile_version(namespace, name)
        started = time.perf_counter()
        try:
            outcome = self._reconcile(namespace, name)
        except ConchError:
            self.metrics.reconciles.labels(result="error").inc()
            raise
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
        self.metrics.reconciles.labels(
            result="requeue" if outcome.requeue_after else "success"
        ).inc()
        return outcome

    def _reconcile(self, namespace: str, name: str) -> Outcome:
        raw = self.kube.get(MODEL_SERVICE, namespace, name)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            self.ready.pop((namespace, name), None)
            self.kube.forget(namespace, name)
            served = self.serving.pop((namespace, name), None)
            # the garbage collector removes what we owned; the version loses a user
            return Outcome(touch=((MODEL_VERSION.kind, namespace, served),) if served else ())
        try:
            svc = ModelService.model_validate(raw)
        except ValidationError as error:
            # The CRD schema should make this impossible; report it rather than crash.
            self._write_invalid(raw, str(error))
            return Outcome()
        try:
            observation = self._converge(svc, raw)
        except ApiError:
            raise  # temporary: the work queue retries with backoff, status is left alone
        except ConchError as error:
            observation = status.Observation(version=svc.spec.model_version, error=error)
        new = status.compute(svc, observation, _now())
        self._write_status(svc, raw, new)
        ready = next(c for c in new.conditions if c.type == reasons.READY)
        self.ready[(namespace, name)] = ready.status
        before = self.serving.get((namespace, name))
        self.serving[(namespace, name)] = svc.spec.model_version
        touch = tuple(
            (MODEL_VERSION.kind, namespace, v)
            for v in {before, svc.spec.model_version}
            if v and before != svc.spec.model_version
        )
        return Outcome(requeue_after=0.0 if ready.status == "True" else NOT_READY_POLL, touch=touch)

    def _reconcile_version(self, namespace: str, name: str) -> Outcome:
        """ModelVersion status: which ModelServices use it (read from the API, not memory)."""
        raw = self.kube.get(MODEL_VERSION, namespace, name)
        if raw is None:
            return Outcome()
        services = self.kube.list(MODEL_SERVICE, namespace, {})
        used_by = sorted(
            s["metadata"]["name"]
            for s in services
            if s.get("spec", {}).get("modelVersion") == name
            and not s["metadata"].get("deletionTimestamp")
        )
        current = raw.get("status") or {}
        wanted = {
            **current,
            "observedGeneration": raw["metadata"].get("generation"),
            "usedBy": used_by,
        }
        if wanted != current:
            self.kube.patch_status(MODEL_VERSION, namespace, name, wanted)
        return Outcome()

    def _converge(self, svc: ModelService, raw: Manifest) -> status.Observation:
        namespace = svc.metadata.namespace or ""
        mv_raw = self.kube.get(MODEL_VERSION, namespace, svc.spec.model_version)
        if mv_raw is None:
            raise ModelVersionNotFound(
                f"ModelVersion {svc.spec.model_version!r} not found in namespace {namespace!r}"
            )
        try:
            mv = ModelVersion.model_validate(mv_raw)
        except ValidationError as error:
            raise InvalidSpec(f"ModelVersion {svc.spec.model_version!r}: {error}") from None
        capabilities = Capabilities(
            service_monitor=self.kube.has_kind(SERVICE_MONITOR_API, "ServiceMonitor"),
        )
        wanted = builders.desired(svc, mv, self.settings, capabilities)
        served: Manifest | None = None
        changes: dict[Applied, list[str]] = {Applied.CREATED: [], Applied.UPDATED: []}
        for obj in wanted:
            result, live = self.kube.apply(obj)
            if result is not Applied.UNCHANGED:
                changes[result].append(f"{obj['kind']} {obj['metadata']['name']}")
            if obj["kind"] == "Deployment":
                served = live
        for result, objects in changes.items():
            if objects:  # one Event per reconcile, not one per object
                self._record(raw, "Normal", result.value, f"{result.value} {', '.join(objects)}")
        self._prune(svc, raw, wanted)
        pods: list[Manifest] = []
        desired_replicas = self._desired_replicas(svc, served)
        rollout = (served or {}).get("status", {})
        if int(rollout.get("replicas", 0)) > int(rollout.get("readyReplicas", 0)):
            # Pods exist but are not all ready: the scheduler may be telling us why.
            pods = self.kube.list(POD, namespace, selector(svc, mv.metadata.name))
        return status.Observation(
            version=mv.metadata.name,
            deployment=served,
            pods=pods,
            desired_replicas=desired_replicas,
        )

    @staticmethod
    def _desired_replicas(svc: ModelService, served: Manifest | None) -> int:
        if svc.spec.autoscaling is not None:
            live = (served or {}).get("spec", {}).get("replicas")
            return max(svc.spec.autoscaling.min_replicas, int(live or 0))
        return 1 if svc.spec.replicas is None else svc.spec.replicas

    def _prune(self, svc: ModelService, raw: Manifest, wanted: list[Manifest]) -> None:
        """Delete owned objects of kinds that come and go (old versions, a dropped HPA)."""
        namespace = svc.metadata.namespace or ""
        observed: list[Manifest] = []
        for kind in ("Deployment", "HorizontalPodAutoscaler"):
            for obj in self.kube.list(OWNED[kind], namespace, {SERVICE_LABEL: svc.metadata.name}):
                obj.setdefault("kind", kind)
                owners = obj["metadata"].get("ownerReferences", [])
                if any(o.get("uid") == svc.metadata.uid for o in owners):
                    observed.append(obj)
        for obj in builders.stale(wanted, observed):
            self.kube.delete(obj)
            self._record(
                raw, "Normal", "Deleted", f"Deleted {obj['kind']} {obj['metadata']['name']}"
            )

    def _write_status(self, svc: ModelService, raw: Manifest, new: ModelServiceStatus) -> None:
        wire = status.to_wire(new)
        if wire == raw.get("status"):
            return
        self.kube.patch_status(MODEL_SERVICE, svc.metadata.namespace or "", svc.metadata.name, wire)
        # Ready's transitions are the story a user follows; Progressing and Degraded say the
        # same thing in other words, so they get no Events of their own.
        old = {c.type: c for c in (svc.status.conditions if svc.status else [])}
        cond = next(c for c in new.conditions if c.type == reasons.READY)
        before = old.get(reasons.READY)
        if before is None or (before.status, before.reason) != (cond.status, cond.reason):
            kind = "Warning" if cond.reason in WARNING_REASONS else "Normal"
            self._record(raw, kind, cond.reason, f"Ready={cond.status}: {cond.message}")

    def _write_invalid(self, raw: Manifest, message: str) -> None:
        meta = raw["metadata"]
        cond = {
            "type": reasons.READY,
            "status": "False",
            "reason": reasons.INVALID_SPEC,
            "message": message[:32768],
            "lastTransitionTime": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.kube.patch_status(
            MODEL_SERVICE, meta["namespace"], meta["name"], {"conditions": [cond]}
        )
        self._record(raw, "Warning", reasons.INVALID_SPEC, message)

    def _record(self, regarding: Manifest, type_: str, reason: str, note: str) -> None:
        """One funnel for decisions: a log line and an Event on the ModelService."""
        meta = regarding["metadata"]
        log.info("%s/%s %s: %s", meta["namespace"], meta["name"], reason, note)
        try:
            self.kube.event(regarding, type_, reason, action="Reconcile", note=note)
        except ConchError as error:
            log.warning(
                "could not post Event for %s/%s: %s", meta["namespace"], meta["name"], error
            )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
