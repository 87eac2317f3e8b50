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

from conch import artifacts, builders, policy, reasons, rollout, routers, status
from conch.api import ModelService, ModelServiceStatus, ModelVersion
from conch.builders import Capabilities, PodSettings, Served
from conch.builders.deployment import name as deployment_name
from conch.builders.meta import SERVICE_LABEL, VERSION_LABEL, Manifest, selector
from conch.builders.servicemonitor import API_VERSION as SERVICE_MONITOR_API
from conch.errors import (
    ConchError,
    InvalidSpec,
    ModelVersionNotFound,
    NameConflict,
    PolicyViolation,
)
from conch.kube import MODEL_SERVICE, MODEL_VERSION, OWNED, POD, SECRET, Applied, Kube
from conch.metrics import OperatorMetrics
from conch.providers import MetricProvider, QueryFailed, queries
from conch.routers.gateway import API_VERSION as HTTP_ROUTE_API

log = logging.getLogger("conch.controller")

NOT_READY_POLL = 10.0
"""Seconds between looks at a ModelService that is not Ready yet (pods are not watched)."""
REFUSED_POLL = 60.0
"""Seconds between looks at a spec that was refused (the refusal may depend on objects that
are not watched, such as a credentials Secret's labels)."""
ROLLOUT_POLL = 5.0
"""Seconds between looks while a rollout is under way (canary readiness, step timers)."""
ABORT_ANNOTATION = "serving.conch.dev/abort"
"""Set (any value) to abort the rollout in progress; Conch removes it once acted on."""
RETRY_ANNOTATION = "serving.conch.dev/retry"
"""Set (any value) to retry a rolled-back rollout; Conch removes it once acted on."""

WARNING_REASONS = {
    reasons.MODEL_VERSION_NOT_FOUND,
    reasons.INVALID_SPEC,
    reasons.INSUFFICIENT_GPU,
    reasons.UNSCHEDULABLE,
    reasons.PROGRESS_DEADLINE_EXCEEDED,
    reasons.NAME_CONFLICT,
    reasons.POLICY_VIOLATION,
    reasons.CREDENTIALS_NOT_ALLOWED,
    reasons.SOURCE_NOT_ALLOWED,
    reasons.STATUS_REBUILT,
    *status.PULL_REASONS.values(),
}


Key = tuple[str, str, str]
"""(kind, namespace, name): what the work queue holds."""


@dataclass(frozen=True)
class Outcome:
    """What the work queue should do next: look again later, and/or look at other objects."""

    requeue_after: float = 0.0
    touch: tuple[Key, ...] = ()


@dataclass(frozen=True)
class Plan:
    """What one reconcile decided: the serving version's observation and the rollout step."""

    serving: status.Observation
    decision: rollout.Decision
    seen: rollout.Observation


class Controller:
    def __init__(
        self,
        kube: Kube,
        settings: PodSettings,
        metrics: OperatorMetrics,
        provider: MetricProvider | None = None,
    ) -> None:
        self.provider = provider
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.ready: dict[tuple[str, str], tuple[str, str]] = {}  # -> (Ready, phase)
        self.serving: dict[tuple[str, str], set[str]] = {}  # (ns, service) -> versions used
        metrics.watch_services(lambda: dict(self.ready))

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
            lost = self.serving.pop((namespace, name), set())
            # the garbage collector removes what we owned; the versions it ran lost a user
            # (the handler that saw the deletion also queues its spec.modelVersion)
            return Outcome(touch=tuple((MODEL_VERSION.kind, namespace, v) for v in sorted(lost)))
        try:
            svc = ModelService.model_validate(raw)
        except ValidationError as error:
            try:  # status is our output, never input: one that does not parse is rebuilt
                svc = ModelService.model_validate({**raw, "status": None})
                log.warning("%s/%s: ignoring a status that does not parse", namespace, name)
            except ValidationError:
                # The CRD schema should make this impossible; report it rather than crash.
                self._write_invalid(raw, str(error))
                return Outcome()
        now = _now()
        live = self._deployments(svc)
        plan: Plan | None = None
        try:
            try:
                plan = self._converge(svc, raw, live, now)
            except ConchError:
                raise
            except Exception as bug:  # pure code choked on this spec: report it, never loop
                log.exception("%s/%s: reconcile failed", namespace, name)
                raise InvalidSpec(f"the operator could not act on this spec: {bug!r}") from bug
            observation = plan.serving
        except ConchError as error:
            if error.temporary:
                raise  # the work queue retries with backoff, status is left alone
            # Nothing was changed; what already serves keeps serving and is reported as such.
            recorded = rollout.from_status(svc.status).stable
            version = recorded if recorded in live else svc.spec.model_version
            deployment = live.get(version)
            observation = status.Observation(
                version=version,
                error=error,
                deployment=deployment,
                desired_replicas=int((deployment or {}).get("spec", {}).get("replicas", 1)),
            )
        decision = plan.decision if plan else None
        new = status.compute(svc, observation, now, decision, plan.seen if plan else None)
        for event in decision.events if decision else ():
            self._record(raw, event.type, event.reason, event.message)
        self._write_status(svc, raw, new)
        if decision:
            self._acknowledge(raw, decision)
        ready = next(c for c in new.conditions if c.type == reasons.READY)
        self.ready[(namespace, name)] = (ready.status, new.phase or "Pending")
        before_analysis = svc.status.last_analysis if svc.status else None
        if new.last_analysis and new.last_analysis != before_analysis:
            self.metrics.analyses.labels(verdict=new.last_analysis.verdict).inc()
        before = self.serving.get((namespace, name), set())
        used = _versions_used({"spec": raw.get("spec"), "status": status.to_wire(new)})
        self.serving[(namespace, name)] = used
        touch = tuple((MODEL_VERSION.kind, namespace, v) for v in sorted(before ^ used))
        requeue = 0.0 if ready.status == "True" else NOT_READY_POLL
        if plan is None and ready.status != "True":
            requeue = REFUSED_POLL  # a refused spec waits for a change (or a fixed Secret)
        if decision and decision.phase != "Stable":
            requeue = min(requeue or ROLLOUT_POLL, ROLLOUT_POLL)
        if decision and decision.next_check:
            due = max((decision.next_check - now).total_seconds(), 0.5)
            requeue = min(requeue, due) if requeue else due
        return Outcome(requeue_after=requeue, touch=touch)

    def _reconcile_version(self, namespace: str, name: str) -> Outcome:
        """ModelVersion status: which ModelServices use it (read from the API, not memory)."""
        raw = self.kube.get(MODEL_VERSION, namespace, name)
        if raw is None:
            return Outcome()
        services = self.kube.list(MODEL_SERVICE, namespace, {})
        used_by = sorted(
            s["metadata"]["name"]
            for s in services
            if name in _versions_used(s) and not s["metadata"].get("deletionTimestamp")
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

    def _model_version(self, namespace: str, name: str) -> ModelVersion | None:
        raw = self.kube.get(MODEL_VERSION, namespace, name)
        if raw is None:
            return None
        try:
            return ModelVersion.model_validate(raw)
        except ValidationError as error:
            raise InvalidSpec(f"ModelVersion {name!r}: {error}") from None

    def _converge(
        self, svc: ModelService, raw: Manifest, live: dict[str, Manifest], now: dt.datetime
    ) -> Plan:
        """Decide the rollout step, apply what it implies, and say what serves. `live` are
        the Deployments this service controls, by version."""
        namespace = svc.metadata.namespace or ""
        if refused := policy.violations(svc.spec, self.settings.policy):
            raise PolicyViolation(refused)
        target = self._model_version(namespace, svc.spec.model_version)
        if target is None:
            raise ModelVersionNotFound(
                f"ModelVersion {svc.spec.model_version!r} not found in namespace {namespace!r}"
            )
        capabilities = Capabilities(
            service_monitor=self.kube.has_kind(SERVICE_MONITOR_API, "ServiceMonitor"),
            http_route=self.kube.has_kind(HTTP_ROUTE_API, "HTTPRoute"),
        )
        if svc.spec.rollout.router == "gatewayAPI" and not capabilities.http_route:
            raise InvalidSpec("router gatewayAPI needs the Gateway API CRDs (HTTPRoute)")
        ready = {v: int(d.get("status", {}).get("readyReplicas", 0)) for v, d in live.items()}
        state, rebuilt = rollout.reconcile_with_live(
            rollout.from_status(svc.status), ready, target.metadata.name
        )
        if rebuilt:
            self._record(raw, "Warning", reasons.STATUS_REBUILT, f"{rebuilt}: acting on what runs")
        stable_live = live.get(state.stable or target.metadata.name)
        plan_policy = rollout.Policy.from_spec(svc.spec, self._desired_replicas(svc, stable_live))
        annotations = raw["metadata"].get("annotations") or {}
        seen = rollout.Observation(
            ready=ready,
            canary_unschedulable=self._unschedulable(svc, live.get(state.canary or "")),
            accuracy_drop=rollout.accuracy_drop(target.spec),
            abort_requested=ABORT_ANNOTATION in annotations,
            retry_requested=RETRY_ANNOTATION in annotations,
        )
        samples = None
        if state.canary and rollout.analysis_due(plan_policy, state, now):
            samples = self._samples(svc, state.canary)
        decision = rollout.decide(plan_policy, state, seen, samples, now)

        versions = {target.metadata.name: target}
        served: list[Served] = []
        missing: list[str] = []
        for version, replicas in decision.replicas.items():
            mv = versions.get(version) or self._model_version(namespace, version)
            if mv is None:
                # Deleted while still served: its Deployment is left exactly as it is (never
                # scaled down or removed because a ModelVersion is gone) and reported.
                missing.append(version)
                continue
            hpa_owned = svc.spec.autoscaling is not None and version == decision.state.stable
            hosts = self._credentials_hosts(mv)
            served.append(Served(mv, None if hpa_owned else replicas, tuple(hosts)))
        router = routers.create(svc.spec.rollout.router)
        routing = router.objects(
            svc, decision.state.stable, decision.state.canary, decision.weights
        )
        wanted = builders.desired(
            svc,
            served,
            routing,
            decision.state.stable or target.metadata.name,
            self.settings,
            capabilities,
        )
        applied = self._apply(svc, raw, wanted)
        kept = [d for v, d in live.items() if v not in missing]
        self._prune(svc, raw, wanted, capabilities, kept)

        serving_version = decision.state.stable or target.metadata.name
        deployment = applied.get(("Deployment", deployment_name(svc, serving_version)))
        if deployment is None:
            deployment = live.get(serving_version)
        pods: list[Manifest] = []
        counts = (deployment or {}).get("status", {})
        if int(counts.get("replicas", 0)) > int(counts.get("readyReplicas", 0)):
            # Pods exist but are not all ready: the scheduler may be telling us why.
            pods = self.kube.list(POD, namespace, selector(svc, serving_version))
        serving = status.Observation(
            version=serving_version,
            deployment=deployment,
            pods=pods,
            # mid-rollout the stable version may be asked for fewer replicas than the service
            desired_replicas=decision.replicas.get(serving_version, plan_policy.desired_replicas),
            missing=tuple(missing),
        )
        return Plan(serving=serving, decision=decision, seen=seen)

    def _credentials_hosts(self, mv: ModelVersion) -> list[str]:
        """Where `mv`'s credentials may go, checked against its Secret's metadata only."""
        ref = mv.spec.source.credentials_secret_ref
        secret = (
            self.kube.get_metadata(SECRET, mv.metadata.namespace or "", ref.name) if ref else None
        )
        return artifacts.check(mv, secret, self.settings.access)

    def _deployments(self, svc: ModelService) -> dict[str, Manifest]:
        """This service's Deployments by the ModelVersion they run."""
        found = self.kube.list(
            OWNED["Deployment"], svc.metadata.namespace or "", {SERVICE_LABEL: svc.metadata.name}
        )
        return {
            d["metadata"]["labels"][VERSION_LABEL]: d
            for d in found
            if VERSION_LABEL in d["metadata"].get("labels", {})
            and builders.controlled_by(d, svc.metadata.uid)
        }

    def _unschedulable(self, svc: ModelService, deployment: Manifest | None) -> str | None:
        """The scheduler's message when the canary's pods wait for GPUs."""
        if deployment is None:
            return None
        counts = deployment.get("status", {})
        if int(counts.get("replicas", 0)) <= int(counts.get("readyReplicas", 0)):
            return None
        version = deployment["metadata"]["labels"][VERSION_LABEL]
        pods = self.kube.list(POD, svc.metadata.namespace or "", selector(svc, version))
        message = status.unschedulable(pods)
        if message and any(f"Insufficient {m}" in message for m in status.ACCELERATOR_MARKERS):
            return message
        return None

    def _samples(self, svc: ModelService, canary: str) -> rollout.Samples:
        """The canary's metrics over one analysis interval; failures are "no data"."""
        if self.provider is None:
            return rollout.Samples()
        analysis = svc.spec.rollout.analysis
        target = queries.Target(
            svc.metadata.namespace or "", svc.metadata.name, canary, analysis.interval
        )
        try:
            return rollout.Samples(
                requests=self.provider.query(queries.requests(target)),
                error_rate=self.provider.query(queries.error_rate(target)),
                p99_latency_ms=self.provider.query(queries.p99_latency_ms(target)),
                queue_time_ms=self.provider.query(queries.queue_time_ms(target)),
                custom={
                    c.name: self.provider.query(queries.custom(c.query, target))
                    for c in analysis.custom
                },
            )
        except QueryFailed as error:
            log.warning("analysis of %s/%s: %s", svc.metadata.namespace, canary, error)
            return rollout.Samples()

    def _apply(
        self, svc: ModelService, raw: Manifest, wanted: list[Manifest]
    ) -> dict[tuple[str, str], Manifest]:
        """Server-side apply every wanted object; one Event per reconcile for what changed.

        Every name is checked first: if any is held by an object this service does not
        control, nothing at all is applied (NameConflict), so a ModelService can never
        adopt, rewrite or, through the garbage collector, delete someone else's object.
        """
        found = {
            builders.key(obj): self.kube.get(
                OWNED[obj["kind"]], obj["metadata"]["namespace"], obj["metadata"]["name"]
            )
            for obj in wanted
        }
        held = [
            f"{kind} {name}"
            for (kind, name), current in found.items()
            if current is not None and not builders.controlled_by(current, svc.metadata.uid)
        ]
        if held:
            raise NameConflict(
                f"{', '.join(held)} already exist(s) and belong(s) to someone else; "
                "Conch does not take over objects it did not create: rename the ModelService "
                "or remove those objects"
            )
        spec_changed = (
            svc.status is None or svc.status.observed_generation != svc.metadata.generation
        )
        if spec_changed or None in found.values():
            self._dry_run(wanted)
        live: dict[tuple[str, str], Manifest] = {}
        changes: dict[Applied, list[str]] = {Applied.CREATED: [], Applied.UPDATED: []}
        for obj in wanted:
            result, applied = self.kube.apply(obj)
            if result is not Applied.UNCHANGED:
                changes[result].append(f"{obj['kind']} {obj['metadata']['name']}")
            live[builders.key(obj)] = applied
        for result, objects in changes.items():
            if objects:
                self._record(raw, "Normal", result.value, f"{result.value} {', '.join(objects)}")
        return live

    def _dry_run(self, wanted: list[Manifest]) -> None:
        """All or nothing: every object the spec implies passes a server-side dry run before
        any is written, so a refused Deployment never leaves a Service behind."""
        refused = []
        for obj in wanted:
            try:
                self.kube.dry_run(obj)
            except InvalidSpec as error:
                refused.append(f"{obj['kind']} {obj['metadata']['name']}: {error.message}")
        if refused:
            raise InvalidSpec("; ".join(refused))

    def _acknowledge(self, raw: Manifest, decision: rollout.Decision) -> None:
        """Remove the one-shot abort/retry annotations the decision consumed."""
        names = {
            "abort": ABORT_ANNOTATION,
            "retry": RETRY_ANNOTATION,
        }
        done = {
            names[a.request]: None
            for a in decision.actions
            if isinstance(a, rollout.AcknowledgeRequest)
        }
        if done:
            meta = raw["metadata"]
            self.kube.patch(
                MODEL_SERVICE, meta["namespace"], meta["name"], {"metadata": {"annotations": done}}
            )

    @staticmethod
    def _desired_replicas(svc: ModelService, served: Manifest | None) -> int:
        if svc.spec.autoscaling is not None:
            live = (served or {}).get("spec", {}).get("replicas")
            return max(svc.spec.autoscaling.min_replicas, int(live or 0))
        return 1 if svc.spec.replicas is None else svc.spec.replicas

    def _prune(
        self,
        svc: ModelService,
        raw: Manifest,
        wanted: list[Manifest],
        capabilities: Capabilities,
        deployments: list[Manifest],
    ) -> None:
        """Delete owned objects that are no longer wanted. Deployments come and go with the
        rollout (already listed by the caller), and so do the gatewayAPI router's
        per-version Services; the HPA and the HTTPRoute only with the spec, so they are
        listed only when the spec changed (or its last reconcile did not finish)."""
        namespace = svc.metadata.namespace or ""
        observed = [{**d, "kind": "Deployment"} for d in deployments]
        kinds = set()
        if svc.status is None or svc.status.observed_generation != svc.metadata.generation:
            kinds = {"HorizontalPodAutoscaler", "Service"}
            if capabilities.http_route:
                kinds.add("HTTPRoute")
        if svc.spec.rollout.router == "gatewayAPI":
            kinds.add("Service")  # per-version backends come and go with the rollout
        for kind in sorted(kinds):
            observed += [
                {**obj, "kind": kind}
                for obj in self.kube.list(
                    OWNED[kind], namespace, {SERVICE_LABEL: svc.metadata.name}
                )
            ]
        observed = [obj for obj in observed if builders.controlled_by(obj, svc.metadata.uid)]
        for obj in builders.stale(wanted, observed):
            self.kube.delete(obj)
            self._record(
                raw, "Normal", "Deleted", f"Deleted {obj['kind']} {obj['metadata']['name']}"
            )

    def _write_status(self, svc: ModelService, raw: Manifest, new: ModelServiceStatus) -> None:
        wire = status.to_wire(new)
        current = raw.get("status") or {}
        if wire == current:
            return
        # A merge patch keeps what it does not mention: fields that became empty are nulled.
        patch = {**{k: None for k in current if k not in wire}, **wire}
        self.kube.patch_status(
            MODEL_SERVICE, svc.metadata.namespace or "", svc.metadata.name, patch
        )
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


def _versions_used(service: Manifest) -> set[str]:
    """The ModelVersions a ModelService asks for or still runs (stable and canary)."""
    recorded = service.get("status") or {}
    return {
        v
        for v in (
            service.get("spec", {}).get("modelVersion"),
            (recorded.get("stable") or {}).get("version"),
            (recorded.get("canary") or {}).get("version")
            if recorded.get("phase") != "RolledBack"
            else None,
        )
        if isinstance(v, str)
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
