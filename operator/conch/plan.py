"""One reconcile's decisions: `plan(snapshot, settings, now) -> Plan`. Pure.

The controller observes (a `Snapshot` of everything a reconcile needs), plans here, then
executes the plan (the only I/O). Nothing in this module reads the clock, the network or
the controller's memory, so every decision is a table test away:

    Snapshot --plan--> Plan(write, delete, status, events, acknowledge, requeue)

Refusals found while planning (policy, credentials, a missing ModelVersion, ...) and
those found while executing (a name held by someone else, an API refusal) both end in
`refused()`: nothing written, what serves keeps serving, status says why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from conch import (
    artifacts,
    builders,
    endpointkey,
    ownership,
    policy,
    reasons,
    rollout,
    routers,
    status,
    usage,
)
from conch.api import ModelAccessGrant, ModelService, ModelServiceStatus, ModelVersion
from conch.api.common import MESSAGE_MAX
from conch.api.modelservice import AcceptedTerms
from conch.builders import Capabilities, PodSettings, Served
from conch.builders.meta import Manifest
from conch.errors import (
    ConchError,
    InvalidSpec,
    ModelVersionNotFound,
    NameConflict,
    PolicyViolation,
    UsageRefused,
)

SERIALIZED_CREATES = frozenset({"Service"})
"""Kinds the API server creates one at a time cluster-wide: it allocates every ClusterIP
under one lock, held across the allocation's IPAddress write, and a Service dry run takes
that lock too (Kubernetes' MetaAllocator). A burst of new Services queues there: dry runs
waited 0.4-0.6 s and creates 1.3 s, against 0.07 s for a Deployment's dry run. So a new
one is created off the reconcile (`conch.creates`), and the service is not Ready until it
exists."""

_NAMED_KINDS = frozenset({"Service", "PodDisruptionBudget"})
"""Kinds Conch builds from the ModelService's name alone, with no field a user gives."""


def named_only(obj: Manifest) -> bool:
    """Whether `obj` is built from the ModelService's name alone, with no field a user
    gives: before a write its name is read, not dry-run. A dry run would find nothing its
    apply does not, and costs the API server a whole server-side apply (a Service's waits
    for the ClusterIP lock: `SERIALIZED_CREATES`). A NetworkPolicy is, when no rule names
    peers (no `spec.access`: the ports alone)."""
    if obj["kind"] == "NetworkPolicy":
        return not any("from" in rule for rule in obj["spec"]["ingress"])
    return obj["kind"] in _NAMED_KINDS


NOT_READY_POLL = 10.0
"""Seconds between looks at a ModelService that is not Ready yet (pods are not watched)."""
PODS_SETTLE = 5.0
"""Seconds a Deployment may go without progress, with pods not ready, before a reconcile
reads its pods (`pods_worth_reading`); a look at a not-Ready service comes every
`NOT_READY_POLL` seconds anyway."""
REFUSED_POLL = 60.0
"""Seconds between looks at a spec that was refused (the refusal may depend on objects that
are not watched, such as a credentials Secret's labels)."""
ROLLOUT_POLL = 5.0
"""Seconds between looks while a rollout is under way (canary readiness, step timers)."""
ABORT_ANNOTATION = "serving.conch.dev/abort"
"""Set (any value) to abort the rollout in progress; Conch removes it once acted on."""
RETRY_ANNOTATION = "serving.conch.dev/retry"
"""Set (any value) to retry a rolled-back rollout; Conch removes it once acted on."""
PROMOTE_ANNOTATION = "serving.conch.dev/promote"
"""Set (any value) to skip the remaining canary steps and promote; Conch removes it once acted on."""
REQUESTS = {"abort": ABORT_ANNOTATION, "retry": RETRY_ANNOTATION, "promote": PROMOTE_ANNOTATION}

WARNING_REASONS = frozenset(
    {
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
        reasons.API_ERROR,
        reasons.NO_METRICS_SOURCE,
        reasons.USAGE_NOT_GRANTED,
        reasons.TERMS_NOT_ACCEPTED,
        reasons.TERMS_EXPIRED,
        reasons.CREDENTIALS_NOT_SHARED,
        reasons.REQUEST_LOGGING_NOT_ALLOWED,
        *status.PULL_REASONS.values(),
    }
)


@dataclass(frozen=True)
class Snapshot:
    """Everything one reconcile of a ModelService reads, taken before anything is decided."""

    service: ModelService
    annotations: Mapping[str, str]
    deployments: Mapping[str, Manifest]
    """The Deployments this service controls, by the ModelVersion they run."""
    versions: Mapping[str, ModelVersion]
    """Every ModelVersion the plan may need (spec, recorded stable and canary, live) that
    exists and parses, from spec.modelNamespace; a name absent here is missing. Those of
    another namespace are used only once `usage.check` lets this service serve them."""
    broken: Mapping[str, str] = field(default_factory=dict)
    """ModelVersions that exist but do not parse: name -> why."""
    secrets: Mapping[str, Manifest | None] = field(default_factory=dict)
    """Metadata of the credentials Secrets those ModelVersions name (None: not found)."""
    owned: Mapping[tuple[str, str], Manifest] = field(default_factory=dict)
    """Objects this service controls, by (kind, name), each with its `kind` set."""
    pods: Mapping[str, Sequence[Manifest]] = field(default_factory=dict)
    """Pods of the versions whose Deployments are not fully ready and have not progressed
    for a while (`pods_worth_reading`)."""
    capabilities: Capabilities = field(default_factory=Capabilities)
    samples: rollout.Samples | None = None
    """The canary's metrics, when an analysis is due (see `needs_samples`)."""
    metrics_available: bool = True
    """Whether the operator has a metrics source for analyses."""
    grants: Sequence[ModelAccessGrant] = ()
    """The ModelAccessGrants of spec.modelNamespace, when it is another namespace."""
    gate: Manifest | None = None
    """The gate Secret of endpoint key hashes, as read (None: absent or not needed)."""
    fresh_keys: Mapping[str, str] = field(default_factory=dict)
    """A new random key per listed consumer, used for those that need one (`endpointkey`)."""

    @property
    def replicas(self) -> int:
        """Pods of every version the service runs (what the HPA sees as its current count)."""
        return sum(int(d.get("status", {}).get("replicas", 0)) for d in self.deployments.values())

    @property
    def ready(self) -> dict[str, int]:
        return {
            v: int(d.get("status", {}).get("readyReplicas", 0)) for v, d in self.deployments.items()
        }


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    note: str


@dataclass(frozen=True)
class Plan:
    """What one reconcile does. `execute` carries it out and decides nothing."""

    write: tuple[Manifest, ...] = ()
    """Objects to server-side apply, in order: only those that differ from what runs."""
    check: tuple[Manifest, ...] = ()
    """Every wanted object, for the ownership check and the dry run before `write`."""
    dry_run: bool = False
    """Dry-run `check` before writing anything (the spec changed or a child is missing)."""
    at_once: bool = False
    """The dry runs, then the writes, may each go out together: the service has no child
    yet, so nothing serves and their order cannot matter (a new service's latency is then
    three round trips after its read, not one per object)."""
    create: tuple[tuple[str, str], ...] = ()
    """Keys of `write` created (a POST) in the round of checks, not after it: every child
    of a new service but its Service (created off the reconcile), so its pods start one
    round trip sooner and the checks cost no request of their own. A POST never writes
    into an object that exists; should one be refused or a name be held, those created are
    deleted again before anything else is written, so a refused service is still left with
    nothing. Only on a service's first reconcile (no status yet): a refused one checks
    first, rather than create and delete on every retry."""
    hand_over: tuple[tuple[str, str], ...] = ()
    """Keys of objects in `write` whose fields a create left under an Update entry: handed
    to Conch's server-side apply before it is applied (`conch.ownership`). Until an object
    changes, the Update entry does no harm, so a create costs no second request."""
    delete: tuple[Manifest, ...] = ()
    status: dict[str, Any] | None = None
    """A merge patch for status, or None when it already says this."""
    ready: tuple[str, str] = ("False", "Pending")
    """(Ready, phase), for the operator's metrics."""
    events: tuple[Event, ...] = ()
    acknowledge: tuple[str, ...] = ()
    """One-shot request annotations consumed (removed from the ModelService)."""
    analysis: str | None = None
    """The verdict of an analysis recorded in this plan, for the operator's metrics."""
    scale: tuple[tuple[str, int], ...] = ()
    """(Deployment name, replicas) set by a merge patch, outside server-side apply: scaling
    to zero when usage is revoked or expires (the next allowed plan applies them at size)."""
    keys: endpointkey.KeyChanges = field(default_factory=endpointkey.KeyChanges)
    """Consumer key Secrets to write and delete, and the gate's Secret of hashes."""
    requeue_after: float = 0.0


def state(snap: Snapshot) -> tuple[rollout.RolloutState, str | None]:
    """The rollout state to act on: status, checked against what runs."""
    return rollout.reconcile_with_live(
        rollout.from_status(snap.service.status), snap.ready, snap.service.spec.model_version
    )


def rollout_policy(snap: Snapshot) -> rollout.Policy:
    svc = snap.service
    return rollout.Policy.from_spec(
        svc.spec,
        # what the HPA asks for, when autoscaled: both versions together follow it
        builders.deployment.service_replicas(svc),
        routers.create(svc.spec.rollout.router),
        metrics_available=snap.metrics_available,
    )


def pods_worth_reading(deployment: Manifest, now: dt.datetime) -> bool:
    """Whether a reconcile reads a Deployment's pods (for the scheduler's message or a
    failed artifact pull): some are not ready, and it has made no progress for
    `PODS_SETTLE` seconds. Pods that are starting as they should cost no request."""
    found = deployment.get("status") or {}
    if int(found.get("replicas", 0)) <= int(found.get("readyReplicas", 0)):
        return False
    progressing = [
        c.get("lastUpdateTime")
        for c in found.get("conditions") or []
        if c.get("type") == "Progressing"
    ]
    since = (progressing or [None])[0] or deployment["metadata"].get("creationTimestamp")
    try:
        moved = dt.datetime.fromisoformat(str(since))
    except ValueError:
        return True
    return (now - moved).total_seconds() >= PODS_SETTLE


def needs_samples(snap: Snapshot, now: dt.datetime) -> str | None:
    """The canary whose metrics the plan will read now, if an analysis is due."""
    current, _ = state(snap)
    if current.canary and rollout.analysis_due(rollout_policy(snap), current, now):
        return current.canary
    return None


def plan(snap: Snapshot, settings: PodSettings, now: dt.datetime) -> Plan:
    """Decide everything for one reconcile; refusals become a `refused` plan."""
    try:
        return _plan(snap, settings, now)
    except ConchError as error:
        return refused(snap, error, now)
    except Exception as bug:  # pure code choked on this spec: report it, never loop
        return refused(snap, InvalidSpec(f"the operator could not act on this spec: {bug!r}"), now)


def _version(snap: Snapshot, name: str) -> ModelVersion | None:
    if name in snap.broken:
        raise InvalidSpec(f"ModelVersion {name!r}: {snap.broken[name]}")
    return snap.versions.get(name)


def _plan(snap: Snapshot, settings: PodSettings, now: dt.datetime) -> Plan:
    svc = snap.service
    namespace = usage.model_namespace(svc)
    if refusals := policy.violations(svc.spec, settings.policy):
        raise PolicyViolation(refusals)
    _check_usage(snap, now)
    target = _version(snap, svc.spec.model_version)
    if target is None:
        raise ModelVersionNotFound(
            f"ModelVersion {svc.spec.model_version!r} not found in namespace {namespace!r}"
        )
    router = routers.create(svc.spec.rollout.router)
    if why := router.unavailable(snap.capabilities):
        raise InvalidSpec(why)
    current, rebuilt = state(snap)
    decision_policy = rollout_policy(snap)
    seen = rollout.Observation(
        ready=snap.ready,
        canary_unschedulable=_canary_unschedulable(snap, current.canary),
        accuracy_drop=rollout.accuracy_drop(target.spec),
        abort_requested=ABORT_ANNOTATION in snap.annotations,
        retry_requested=RETRY_ANNOTATION in snap.annotations,
        promote_requested=PROMOTE_ANNOTATION in snap.annotations,
    )
    decision = rollout.decide(decision_policy, current, seen, snap.samples, now)

    served: list[Served] = []
    missing: list[str] = []
    for version, replicas in decision.replicas.items():
        mv = _version(snap, version)
        if mv is None:
            # Deleted while still served: its Deployment is left exactly as it is (never
            # scaled down or removed because a ModelVersion is gone) and reported.
            missing.append(version)
            continue
        ref = mv.spec.source.credentials_secret_ref
        hosts = artifacts.check(mv, snap.secrets.get(ref.name) if ref else None, settings.access)
        served.append(Served(mv, replicas, tuple(hosts)))
    routing = router.objects(svc, decision.state.stable, decision.state.canary, decision.weights)
    serving_version = decision.state.stable or target.metadata.name
    wanted = builders.desired(svc, served, routing, settings, snap.capabilities)
    kept = {
        key: obj
        for key, obj in snap.owned.items()
        if not (
            key[0] == "Deployment"
            and obj["metadata"]["labels"].get(builders.VERSION_LABEL) in missing
        )
    }
    stale = builders.stale(wanted, list(kept.values()))
    deployment = snap.deployments.get(serving_version)
    serving = status.Serving(
        version=serving_version,
        deployment=deployment,
        creating=_creating(snap, wanted),
        pods=list(snap.pods.get(serving_version, ())),
        # mid-rollout the stable version may be asked for fewer replicas than the service
        desired_replicas=decision.replicas.get(serving_version, decision_policy.desired_replicas),
        missing=tuple(missing),
        all_replicas=snap.replicas,
    )
    new = status.compute(svc, serving, now, decision, seen)
    terms = usage.accepted(svc, snap.versions, decision.replicas, now)
    new = new.model_copy(update={"accepted_terms": terms})
    events = [Event(e.type, e.reason, e.message) for e in decision.events]
    events += _acceptance_events(svc, terms)
    before = {(c.type, c.reason) for c in (svc.status.conditions if svc.status else [])}
    events += [  # a refusal to start says so once, when it first appears
        Event("Warning", hint.reason, hint.message)
        for hint in decision.conditions
        if hint.type == reasons.DEGRADED
        and hint.reason in WARNING_REASONS
        and (hint.type, hint.reason) not in before
    ]
    if rebuilt:
        events.insert(
            0, Event("Warning", reasons.STATUS_REBUILT, f"{rebuilt}: acting on what runs")
        )
    acknowledge = tuple(
        REQUESTS[a.request] for a in decision.actions if isinstance(a, rollout.AcknowledgeRequest)
    )
    keys = _keys(snap)
    events += _key_events(svc, keys)
    if endpointkey.ROTATE_ANNOTATION in snap.annotations:
        acknowledge += (endpointkey.ROTATE_ANNOTATION,)
    changed = [obj for obj in wanted if builders.differs(obj, snap.owned.get(builders.key(obj)))]
    spec_changed = svc.status is None or svc.status.observed_generation != svc.metadata.generation
    dry_run = bool(changed) and (
        spec_changed or any(builders.key(o) not in snap.owned for o in changed)
    )
    at_once = bool(changed) and not snap.owned
    first = at_once and dry_run and len(changed) > 1 and svc.status is None
    return _finish(
        snap,
        new,
        now,
        events,
        write=tuple(changed),
        check=tuple(wanted),
        dry_run=dry_run,
        at_once=at_once,
        create=tuple(
            builders.key(o) for o in changed if first and o["kind"] not in SERIALIZED_CREATES
        ),
        hand_over=tuple(
            builders.key(o)
            for o in changed
            if (found := snap.owned.get(builders.key(o))) is not None and ownership.pending(found)
        ),
        delete=tuple(stale),
        acknowledge=acknowledge,
        keys=keys,
        decision=decision,
        wake=usage.next_expiry([s.mv for s in served], now),
    )


def _check_usage(snap: Snapshot, now: dt.datetime) -> None:
    """Usage terms and grants of every version that runs, then of the one asked for: a
    refusal of a running version scales the service to zero (`refused`); one of the
    version asked for only refuses to start it."""
    svc = snap.service
    for name in dict.fromkeys([*sorted(snap.deployments), svc.spec.model_version]):
        error = usage.check(svc, name, snap.versions.get(name), snap.grants, now)
        if error is not None:
            raise error


def _acceptance_events(svc: ModelService, terms: list[AcceptedTerms]) -> list[Event]:
    """One Event when serving under a terms document begins."""
    before = {
        (a.model_version, a.digest) for a in (svc.status.accepted_terms if svc.status else [])
    }
    return [
        Event(
            "Normal",
            reasons.TERMS_ACCEPTED,
            f"serving ModelVersion {a.model_version} under the terms {a.digest}, accepted in "
            "spec.acceptTerms",
        )
        for a in terms
        if (a.model_version, a.digest) not in before
    ]


def _creating(snap: Snapshot, wanted: list[Manifest]) -> tuple[str, ...]:
    """Wanted children of `SERIALIZED_CREATES` kinds that do not exist yet."""
    return tuple(
        f"{kind} {name}"
        for kind, name in map(builders.key, wanted)
        if kind in SERIALIZED_CREATES and (kind, name) not in snap.owned
    )


def refused(snap: Snapshot, error: ConchError, now: dt.datetime) -> Plan:
    """Nothing is written; what already serves keeps serving and is reported as such."""
    svc = snap.service
    recorded = rollout.from_status(svc.status).stable
    version = recorded if recorded and recorded in snap.deployments else svc.spec.model_version
    deployment = snap.deployments.get(version)
    # Usage revoked or expired for a version that runs: every Deployment of the service
    # goes to zero replicas (nothing deleted), and comes back once allowed again.
    suspend = isinstance(error, UsageRefused) and error.version in snap.deployments
    observation = status.Serving(
        version=version,
        error=error,
        deployment=deployment,
        desired_replicas=0
        if suspend
        else int((deployment or {}).get("spec", {}).get("replicas", 1)),
        all_replicas=snap.replicas,
        creating=_creating(snap, [builders.service.build(svc)]),
    )
    new = status.compute(svc, observation, now)
    events: list[Event] = []
    scale: tuple[tuple[str, int], ...] = ()
    if isinstance(error, UsageRefused):  # the refused version's terms are not in force
        kept = [a for a in new.accepted_terms if a.model_version != error.version]
        new = new.model_copy(update={"accepted_terms": kept})
    if suspend:
        scale = tuple(
            (d["metadata"]["name"], 0)
            for _, d in sorted(snap.deployments.items())
            if d.get("spec", {}).get("replicas") != 0
        )
    if scale:
        names = ", ".join(name for name, _ in scale)
        events.append(Event("Warning", reasons.SCALED_TO_ZERO, f"scaled {names} to zero: {error}"))
    # A revocation never waits for an unrelated fix: consumers removed from spec.access lose
    # their keys even while the rest is refused (nothing is issued or rotated then). Not
    # after a name conflict, which may be a key Secret's own.
    keys = endpointkey.KeyChanges()
    if not isinstance(error, NameConflict):
        with contextlib.suppress(ConchError):
            keys = _keys(snap, issue=False)
            events += _key_events(svc, keys)
    return _finish(snap, new, now, events, refused=True, scale=scale, keys=keys)


def _keys(snap: Snapshot, issue: bool = True) -> endpointkey.KeyChanges:
    rotate = endpointkey.requested(snap.annotations)
    return endpointkey.plan(snap.service, snap.gate, snap.fresh_keys, rotate, issue=issue)


def _finish(
    snap: Snapshot,
    new: ModelServiceStatus,
    now: dt.datetime,
    events: list[Event],
    *,
    refused: bool = False,
    decision: rollout.Decision | None = None,
    wake: dt.datetime | None = None,
    **writes: Any,
) -> Plan:
    """The parts every plan shares: the status patch, its Ready Event, metrics, requeue."""
    svc = snap.service
    wire = status.to_wire(new)
    current = (svc.status and status.to_wire(svc.status)) or {}
    patch = None
    if wire != current:
        # A merge patch keeps what it does not mention: fields that became empty are nulled.
        patch = {**{k: None for k in current if k not in wire}, **wire}
        # Ready's transitions are the story a user follows; Progressing and Degraded say the
        # same thing in other words, so they get no Events of their own.
        old = {c.type: c for c in (svc.status.conditions if svc.status else [])}
        cond = next(c for c in new.conditions if c.type == reasons.READY)
        before = old.get(reasons.READY)
        if before is None or (before.status, before.reason) != (cond.status, cond.reason):
            kind = "Warning" if cond.reason in WARNING_REASONS else "Normal"
            events.append(Event(kind, cond.reason, f"Ready={cond.status}: {cond.message}"))
    ready = next(c for c in new.conditions if c.type == reasons.READY)
    before_analysis = svc.status.last_analysis if svc.status else None
    analysis = None
    if new.last_analysis and new.last_analysis != before_analysis:
        analysis = new.last_analysis.verdict
    requeue = 0.0 if ready.status == "True" else NOT_READY_POLL
    if refused and ready.status != "True":
        requeue = REFUSED_POLL  # a refused spec waits for a change (or a fixed Secret)
    if decision and decision.phase != "Stable":
        requeue = min(requeue or ROLLOUT_POLL, ROLLOUT_POLL)
    for instant in (decision.next_check if decision else None, wake):
        if instant is not None:
            due = max((instant - now).total_seconds(), 0.5)
            requeue = min(requeue, due) if requeue else due
    return Plan(
        status=patch,
        ready=(ready.status, new.phase or "Pending"),
        events=tuple(events),
        analysis=analysis,
        requeue_after=requeue,
        **writes,
    )


def _canary_unschedulable(snap: Snapshot, canary: str | None) -> str | None:
    """The scheduler's message when the canary's pods wait for GPUs."""
    message = status.unschedulable(list(snap.pods.get(canary or "", ())))
    if message and any(f"Insufficient {m}" in message for m in status.ACCELERATOR_MARKERS):
        return message
    return None


def reported_invalid(service: Manifest, message: str) -> bool:
    """Whether a ModelService's status already reports it invalid with `message`: its
    status write is not repeated (each write would queue the next reconcile)."""
    recorded = service.get("status")
    conditions = recorded.get("conditions") if isinstance(recorded, dict) else None
    return any(
        isinstance(c, dict)
        and c.get("type") == reasons.READY
        and c.get("reason") == reasons.INVALID_SPEC
        and c.get("message") == message[:MESSAGE_MAX]
        for c in (conditions if isinstance(conditions, list) else [])
    )


def spec_ahead(service: Manifest | None) -> bool:
    """Whether the operator has not acted on this ModelService's spec yet (new or changed):
    such a reconcile goes before routine ones."""
    if service is None:
        return False
    observed = (service.get("status") or {}).get("observedGeneration")
    return bool(service["metadata"].get("generation") != observed)


def version_matters(before: Manifest | None, after: Manifest | None) -> bool:
    """Whether a change of a ModelVersion can change the plans of the services using it: it
    appeared, went, or its spec, labels and annotations (sharing, terms) or deletion changed.
    Plans never read a ModelVersion's status, so a status-only change (such as its usedBy)
    re-reconciles no service."""
    if before is None or after is None:
        return True
    return any(
        before["metadata"].get(k) != after["metadata"].get(k)
        for k in ("generation", "deletionTimestamp", "uid", "labels", "annotations")
    )


def uses(service: Manifest) -> set[str]:
    """The ModelVersions of its own namespace a ModelService asks for or still runs (stable
    and canary); none when it serves another namespace's (whose status Conch leaves alone)."""
    spec = service.get("spec") or {}
    elsewhere = spec.get("modelNamespace")
    if elsewhere and elsewhere != (service.get("metadata") or {}).get("namespace"):
        return set()
    recorded = service.get("status")
    recorded = recorded if isinstance(recorded, dict) else {}

    def version(key: str) -> object:  # status is not trusted to have our shape
        found = recorded.get(key)
        return found.get("version") if isinstance(found, dict) else None

    canary = version("canary") if recorded.get("phase") != "RolledBack" else None
    return {v for v in (spec.get("modelVersion"), version("stable"), canary) if isinstance(v, str)}


def _key_events(svc: ModelService, keys: endpointkey.KeyChanges) -> list[Event]:
    """One Event per consumer whose key was issued, replaced or revoked (never the key)."""
    out = []
    for secret in keys.issue:
        consumer = secret["metadata"]["labels"][endpointkey.CONSUMER_LABEL]
        rotated = consumer in keys.rotated
        out.append(
            Event(
                "Normal",
                reasons.KEY_ROTATED if rotated else reasons.KEY_ISSUED,
                f"{'replaced the' if rotated else 'issued a'} key of consumer {consumer}: "
                f"Secret {secret['metadata']['name']}",
            )
        )
    out += [
        Event(
            "Normal",
            reasons.KEY_REVOKED,
            f"revoked the key of consumer {c}: deleted Secret "
            f"{endpointkey.key_secret_name(svc.metadata.name, c)}",
        )
        for c in keys.revoke
    ]
    return out
