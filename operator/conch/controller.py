"""Reconcile one ModelService: observe -> plan (pure, `conch.plan`) -> execute.

`observe` reads everything a reconcile needs into a `Snapshot`; `plan` decides; `execute`
does the I/O the plan lists and decides nothing, except to stop before writing anything
when a name is held by someone else or the API server would refuse an object, in which
case the refusal is planned (`plan.refused`) and executed instead. Every decision worth a
user's attention goes through `_record`, which logs it and posts an Event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import secrets as random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from conch import builders, catalog, endpointkey, events, plan, reasons, rollout, usage
from conch.api import ModelAccessGrant, ModelService, ModelVersion
from conch.api.common import MESSAGE_MAX
from conch.builders import Capabilities, PodSettings
from conch.builders.meta import SERVICE_LABEL, VERSION_LABEL, Manifest, selector
from conch.creates import Creates
from conch.errors import ConchError, InvalidSpec, NameConflict
from conch.informer import Watched
from conch.kube import (
    MODEL_SERVICE,
    MODEL_VERSION,
    OWNED,
    POD,
    SECRET,
    WRITTEN,
    Applied,
    Kube,
)
from conch.metrics import OperatorMetrics
from conch.providers import MetricProvider, QueryFailed, queries
from conch.unseen import Created, Unseen, resource_version

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger("conch.controller")

Key = tuple[str, str, str]
"""(kind, namespace, name): what the work queue holds."""

FANOUT = len(OWNED)
"""Requests one reconcile sends at once at most (`Plan.at_once`: one per kind it may own).
Each worker gets that many fan-out threads, so one slow kind (a Service waiting for its
ClusterIP) never holds up the other reconciles' requests."""


@dataclass(frozen=True)
class Next:
    """What the work queue should do next: look again later (0: only when something changes)."""

    requeue_after: float = 0.0


class Controller:
    def __init__(
        self,
        kube: Kube,
        settings: PodSettings,
        metrics: OperatorMetrics,
        watched: Watched,
        provider: MetricProvider | None = None,
        workers: int = 16,
    ) -> None:
        self.watched = watched
        self.provider = provider
        self.kube = kube
        self.settings = settings
        self.metrics = metrics
        self.events = events.Poster(self._post, dropped=metrics.events_dropped.inc)
        self._fanout = ThreadPoolExecutor(workers * FANOUT, thread_name_prefix="fanout")
        """Requests of one reconcile that go out together (`Plan.at_once`)."""
        self.creates = Creates(self._create)
        """Creates of `plan.SERIALIZED_CREATES` kinds, sent off the reconcile."""
        self.requeue: Callable[[Key], None] = lambda key: None
        """Queues a service again (the work queue's, set when it starts)."""
        self.unseen = Unseen()
        """The operator's writes to ModelServices their watch has not delivered yet."""
        self.fresh = Created()
        """Children the operator created that their watch has not delivered yet."""
        self.ready: dict[tuple[str, str], tuple[str, str]] = {}  # -> (Ready, phase)
        self.sources: dict[tuple[str, str], str] = {}  # (ns, service) -> other model namespace
        metrics.watch_services(lambda: dict(self.ready))

    def reconcile(self, key: Key) -> Next:
        kind, namespace, name = key
        if kind == MODEL_VERSION.kind:
            with self.kube.counting() as requests:
                try:
                    return self._reconcile_version(namespace, name)
                finally:
                    for kind, count in requests.items():
                        self.metrics.version_api_requests.labels(kind=kind).observe(count)
        started = time.perf_counter()
        with self.kube.counting() as requests:
            try:
                outcome = self._reconcile(namespace, name)
            except ConchError:
                self.metrics.reconciles.labels(result="error").inc()
                raise
            finally:
                self.metrics.reconcile_seconds.observe(time.perf_counter() - started)
                for kind, count in requests.items():
                    self.metrics.api_requests.labels(kind=kind).observe(count)
        self.metrics.reconciles.labels(
            result="requeue" if outcome.requeue_after else "success"
        ).inc()
        return outcome

    def _reconcile(self, namespace: str, name: str) -> Next:
        raw = self._read(namespace, name)
        if raw is None or raw["metadata"].get("deletionTimestamp"):
            return self._forget(namespace, name)
        svc = self._parse(raw)
        if svc is None:
            return Next()
        now = _now()
        if usage.cross_namespace(svc):
            self.sources[(namespace, name)] = usage.model_namespace(svc)
        else:
            self.sources.pop((namespace, name), None)
        snap = self.observe(svc, raw, now)
        decided = plan.plan(snap, self.settings, now)
        try:
            self.execute(raw, snap, decided)
        except ConchError as error:
            if error.temporary:
                raise  # the work queue retries with backoff, status is left alone
            decided = plan.refused(snap, error, now)
            self.execute(raw, snap, decided)
        return self._remember(namespace, name, decided)

    def _read(self, namespace: str, name: str) -> Manifest | None:
        """The ModelService as its watch last delivered it, or as the operator's own last
        write of it answered while the watch has not delivered that yet (`conch.unseen`)."""
        key = (namespace, name)
        if self.unseen.overdue(key):
            raw = self.kube.get(MODEL_SERVICE, namespace, name)
            self.unseen.read(key, raw, resource_version(self.watched.services.get(*key)))
            return raw
        return self.unseen.newest(key) or self.watched.services.get(namespace, name)

    def _wrote(self, raw: Manifest, answer: Manifest) -> None:
        """The operator wrote the ModelService `raw`; the API answered `answer`."""
        key = (raw["metadata"]["namespace"], raw["metadata"]["name"])
        self.unseen.wrote(key, answer, lambda: resource_version(self.watched.services.get(*key)))

    def seen(self, before: Manifest | None, after: Manifest | None) -> None:
        """The ModelService watch has kept `after` (None: the service is gone)."""
        meta = (after or before or {"metadata": {}})["metadata"]
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if after is None:
            self.unseen.forget(key)
        else:
            self.unseen.delivered(key, after)

    def _forget(self, namespace: str, name: str) -> Next:
        """A deleted service: the garbage collector removes what it owned (the versions it
        ran are queued by the ModelService watch: `version_users_changed`)."""
        self.unseen.forget((namespace, name))
        self.ready.pop((namespace, name), None)
        self.sources.pop((namespace, name), None)
        return Next()

    def _remember(self, namespace: str, name: str, decided: plan.Plan) -> Next:
        """The operator's own memory and metrics after a reconcile."""
        self.ready[(namespace, name)] = decided.ready
        if decided.analysis:
            self.metrics.analyses.labels(verdict=decided.analysis).inc()
        return Next(requeue_after=decided.requeue_after)

    def _parse(self, raw: Manifest) -> ModelService | None:
        try:
            return ModelService.model_validate(raw)
        except ValidationError as error:
            try:  # status is our output, never input: one that does not parse is rebuilt
                svc = ModelService.model_validate({**raw, "status": None})
            except ValidationError:
                # The CRD schema should make this impossible; report it rather than crash.
                self._write_invalid(raw, str(error))
                return None
            meta = raw["metadata"]
            log.warning(
                "%s/%s: ignoring a status that does not parse", meta["namespace"], meta["name"]
            )
            return svc

    # -- observe -------------------------------------------------------------------------

    def observe(self, svc: ModelService, raw: Manifest, now: dt.datetime) -> plan.Snapshot:
        """Everything the plan needs, read before anything is decided."""
        namespace = svc.metadata.namespace or ""
        capabilities = Capabilities(
            service_monitor=self.watched.owned["ServiceMonitor"].served,
            http_route=self.watched.owned["HTTPRoute"].served,
        )
        owned = self._owned(svc, capabilities)
        deployments = {
            obj["metadata"]["labels"][VERSION_LABEL]: obj
            for (kind, _), obj in owned.items()
            if kind == "Deployment" and VERSION_LABEL in obj["metadata"].get("labels", {})
        }
        recorded = rollout.from_status(svc.status)
        names = {svc.spec.model_version, recorded.stable, recorded.canary, *deployments}
        where = usage.model_namespace(svc)
        versions: dict[str, ModelVersion] = {}
        broken: dict[str, str] = {}
        for version in sorted(v for v in names if v):
            # watched, or (not seen yet: another watch told us first) read
            found = self.watched.versions.get(where, version) or self.kube.get(
                MODEL_VERSION, where, version
            )
            if found is None:
                continue
            try:
                versions[version] = ModelVersion.model_validate(found)
            except ValidationError as error:
                broken[version] = str(error)
        # A Secret is looked up in the service's own namespace, for its own ModelVersions
        # only: another namespace's version never names a Secret of this one.
        secrets = {
            ref.name: self.kube.get_metadata(SECRET, namespace, ref.name)
            for mv in versions.values()
            if (ref := mv.spec.source.credentials_secret_ref) and where == namespace
        }
        pods = {
            version: self.kube.list(POD, namespace, selector(svc, version))
            for version, d in deployments.items()
            if plan.pods_worth_reading(d, now)
        }
        snap = plan.Snapshot(
            service=svc,
            annotations=raw["metadata"].get("annotations") or {},
            deployments=deployments,
            versions=versions,
            broken=broken,
            secrets=secrets,
            owned=owned,
            pods=pods,
            capabilities=capabilities,
            metrics_available=self.provider is not None,
            grants=self._grants(where) if where != namespace else (),
            **self._keys(svc, deployments),
        )
        if canary := plan.needs_samples(snap, now):
            snap = dataclasses.replace(snap, samples=self._samples(svc, canary))
        return snap

    def _keys(self, svc: ModelService, deployments: Mapping[str, Manifest]) -> dict[str, Any]:
        """The gate Secret (hashes of the keys issued) when the spec or a running pod
        template uses the gate, and a fresh random key per listed consumer (drawn here so
        the plan stays pure; those not needed are dropped)."""
        name = svc.metadata.name
        if not endpointkey.gate_on(svc) and not any(
            endpointkey.mentions_gate(d, name) for d in deployments.values()
        ):
            return {}
        gate = self.kube.get(
            SECRET, svc.metadata.namespace or "", endpointkey.gate_secret_name(name)
        )
        fresh = {c: random.token_urlsafe(32) for c in endpointkey.consumers(svc)}
        return {"gate": gate, "fresh_keys": fresh}

    def _grants(self, namespace: str) -> tuple[ModelAccessGrant, ...]:
        """The ModelAccessGrants of `namespace` that parse (the schema makes all of them)."""
        if self.watched.grants is None:
            return ()
        out = []
        for raw in self.watched.grants.select(namespace, {}):
            try:
                out.append(ModelAccessGrant.model_validate(raw))
            except ValidationError as error:
                meta = raw["metadata"]
                log.warning("ModelAccessGrant %s/%s: %s", namespace, meta["name"], error)
        return tuple(out)

    def consumers(self, namespace: str) -> tuple[Key, ...]:
        """The ModelServices (last seen) serving ModelVersions of `namespace` from another
        namespace: a grant there changing concerns them."""
        return tuple(
            (MODEL_SERVICE.kind, ns, name)
            for (ns, name), where in sorted(self.sources.items())
            if where == namespace
        )

    def _owned(
        self, svc: ModelService, capabilities: Capabilities
    ) -> dict[tuple[str, str], Manifest]:
        """The objects this service controls, of every kind it may own."""
        kinds = [
            k
            for k in OWNED
            if (k != "ServiceMonitor" or capabilities.service_monitor)
            and (k != "HTTPRoute" or capabilities.http_route)
        ]
        namespace = svc.metadata.namespace or ""
        labels = {SERVICE_LABEL: svc.metadata.name}
        watched = {
            (kind, obj["metadata"]["name"]): obj
            for kind in kinds
            for obj in self.watched.owned[kind].select(namespace, labels)
            if builders.controlled_by(obj, svc.metadata.uid)
        }
        fresh = self.fresh.standing_in(
            svc.metadata.uid or "",
            lambda kind, name: self.watched.owned[kind].holds(namespace, name),
        )
        return {**fresh, **watched}

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

    # -- execute -------------------------------------------------------------------------

    def execute(self, raw: Manifest, snap: plan.Snapshot, decided: plan.Plan) -> None:
        """Carry out `decided`; `_prepare` first, so nothing is written when a name is held by
        someone else or the API server would refuse an object. Creates of
        `plan.SERIALIZED_CREATES` kinds are sent off the reconcile, after the rest; one
        already sent off and not ended is left to that (it reads the name again itself)."""
        if waiting := [o for o in decided.write if self.creates.in_flight(o)]:
            decided = dataclasses.replace(
                decided,
                write=tuple(o for o in decided.write if o not in waiting),
                check=tuple(o for o in decided.check if o not in waiting),
            )
        found, created = self._prepare(snap, decided)
        for answer in created.values():
            self.fresh.created(snap.service.metadata.uid or "", answer)
        observed = {**found, **snap.owned}
        for key in decided.hand_over:  # before the apply: then it removes what it drops
            meta = snap.owned[key]["metadata"]
            read = self.kube.get(WRITTEN[key[0]], meta["namespace"], meta["name"])
            if read is not None and (handed := self.kube.hand_over(read)) is not None:
                observed[key] = handed
        self._write_keys(snap, decided.keys)
        serialized = [o for o in decided.write if o["kind"] in plan.SERIALIZED_CREATES]
        sent_off = [
            o for o in serialized if builders.key(o) not in observed and not self.creates.failed(o)
        ]
        self._apply(
            raw,
            tuple(o for o in decided.write if o not in sent_off),
            observed,
            decided.at_once,
            created,
        )
        for obj in serialized:
            if obj in sent_off:  # once the rest is written: a refused Deployment leaves nothing
                self.creates.submit(obj, self._created(raw, obj))
            else:
                self.creates.written(obj)
        for deployment, replicas in decided.scale:
            self.kube.patch(
                OWNED["Deployment"],
                raw["metadata"]["namespace"],
                deployment,
                {"spec": {"replicas": replicas}},
            )
        for obj in decided.delete:
            self.kube.delete(obj)
            self._record(
                raw, "Normal", "Deleted", f"Deleted {obj['kind']} {obj['metadata']['name']}"
            )
        for event in decided.events:
            self._record(raw, event.type, event.reason, event.note)
        meta = raw["metadata"]
        if decided.status is not None:
            self._wrote(
                raw,
                self.kube.patch_status(
                    MODEL_SERVICE, meta["namespace"], meta["name"], decided.status
                ),
            )
        if decided.acknowledge:
            self._wrote(
                raw,
                self.kube.patch(
                    MODEL_SERVICE,
                    meta["namespace"],
                    meta["name"],
                    {"metadata": {"annotations": dict.fromkeys(decided.acknowledge)}},
                ),
            )

    def _create(self, obj: Manifest) -> None:
        """A create sent off the reconcile: the name is read again first (it may have been
        taken since the reconcile read it; a forced apply would take the object over)."""
        owner = next(r["uid"] for r in obj["metadata"]["ownerReferences"] if r.get("controller"))
        ours = self._check_names(owner, [obj])
        result, answer = self.kube.apply(obj, ours.get(builders.key(obj)))
        if result is Applied.CREATED:
            self.fresh.created(owner, answer)

    def _created(self, raw: Manifest, obj: Manifest) -> Callable[[ConchError | None], None]:
        """What to do when a create sent off the reconcile ends: tell (the object's watch
        then queues the service), or queue the service, whose next reconcile writes the
        object itself (`Creates.failed`)."""
        meta = raw["metadata"]
        key = (MODEL_SERVICE.kind, meta["namespace"], meta["name"])
        what = f"{obj['kind']} {obj['metadata']['name']}"

        def done(error: ConchError | None) -> None:
            if error is None:
                self._record(raw, "Normal", "Created", f"Created {what}")
            else:
                self.requeue(key)

        return done

    def _write_keys(self, snap: plan.Snapshot, keys: endpointkey.KeyChanges) -> None:
        """Consumer key Secrets, then the gate's hashes (the order `KeyChanges` explains).
        A consumer Secret's name held by someone else is a NameConflict, never overwritten
        (`_check_names`, which reads metadata only: the operator never reads a key back)."""
        if keys.empty:
            return
        namespace, uid = snap.service.metadata.namespace or "", snap.service.metadata.uid
        for secret in keys.issue:
            ours = self._check_names(uid, [secret])
            self.kube.apply(secret, ours.get(builders.key(secret)))
        for name in keys.revoked_secrets():
            found = self.kube.get_metadata(SECRET, namespace, name)
            if found is not None and builders.controlled_by(found, uid):
                self.kube.delete({**found, "kind": SECRET.kind})
        if keys.gate is not None:
            self.kube.apply(keys.gate, snap.gate)
        elif keys.delete_gate and snap.gate is not None:
            self.kube.delete({**snap.gate, "kind": SECRET.kind})

    def _prepare(
        self, snap: plan.Snapshot, decided: plan.Plan
    ) -> tuple[dict[tuple[str, str], Manifest], dict[tuple[str, str], Manifest]]:
        """Before writing anything: every name must be free or ours (NameConflict otherwise,
        so a ModelService never adopts, rewrites or, through the garbage collector, deletes
        someone else's object), and, when the plan asks, every object passes a server-side
        dry run (all or nothing: a refused Deployment never leaves a Service behind).

        The dry run is skipped for a single write: its apply is refused identically and
        nothing else has been written by then (deletes, status and Events come after). With
        several writes, a dry run that would create the object (201) also proves its name
        free, so only the names a dry run found taken are read (most reconciles: none).
        An object of `plan.named_only` is read instead when its name is not known to be ours,
        and one of `plan.Plan.create` is created, in the same round of requests; those
        created are deleted again when anything is refused or held.

        Returns the objects read that turned out to be this service's (not watched yet),
        and those created (as the API answered)."""
        unknown = [o for o in decided.check if builders.key(o) not in snap.owned]
        refused: list[str] = []
        failed: ConchError | None = None
        created: dict[tuple[str, str], Manifest] = {}
        if decided.dry_run and len(decided.write) > 1:
            free = set()  # every unknown object is written (it differs from nothing)
            probed = [
                o
                for o in decided.write
                if not plan.named_only(o) or builders.key(o) not in snap.owned
            ]

            def probe(obj: Manifest) -> bool | Manifest | ConchError:
                return self._probe(obj, builders.key(obj) in decided.create)

            answers = self._each(decided.at_once, probe, probed)
            for obj, answer in zip(probed, answers, strict=True):
                if isinstance(answer, InvalidSpec):  # perhaps someone else controls it
                    refused.append(f"{obj['kind']} {obj['metadata']['name']}: {answer.message}")
                elif isinstance(answer, ConchError):
                    failed = answer  # raised once what this round created is deleted
                elif isinstance(answer, dict):
                    created[builders.key(obj)] = answer
                    free.add(builders.key(obj))
                elif answer:
                    free.add(builders.key(obj))
            unknown = [o for o in unknown if builders.key(o) not in free]
        try:
            if failed is not None:
                raise failed
            found = self._check_names(snap.service.metadata.uid, unknown)
            if refused:
                raise InvalidSpec("; ".join(refused))
        except ConchError:
            for answer in created.values():
                self.kube.delete(answer)
            raise
        return found, created

    def _probe(self, obj: Manifest, create: bool = False) -> bool | Manifest | ConchError:
        """Whether `obj`'s name is free (the apply would create it), or the API's refusal of
        it (or another error: returned, so the others of the round are still known): a dry
        run, or for an object of `plan.named_only` a read of its metadata. With `create`, a
        POST instead: the object created, or False when the name is taken."""
        try:
            if create:
                return self.kube.create(obj) or False
            if plan.named_only(obj):
                meta = obj["metadata"]
                found = self.kube.get_metadata(OWNED[obj["kind"]], meta["namespace"], meta["name"])
                return found is None
            return self.kube.dry_run(obj)
        except ConchError as error:
            return error

    def _each(self, at_once: bool, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`fn` over `items`: one after the other, or all at once when the plan allows it."""
        if not at_once or len(items) < 2:
            return [fn(item) for item in items]
        return list(self._fanout.map(self.kube.carried(fn), items))

    def _check_names(
        self, uid: str | None, unknown: list[Manifest]
    ) -> dict[tuple[str, str], Manifest]:
        """NameConflict when any of `unknown` (objects not seen as this service's) exists and
        is not controlled by `uid`; else the metadata of those that exist (this service's,
        not watched yet: an apply needs their resourceVersion). Metadata only: a Secret's
        data never reaches the operator."""
        held, ours = [], {}
        for obj in unknown:
            meta = obj["metadata"]
            found = self.kube.get_metadata(WRITTEN[obj["kind"]], meta["namespace"], meta["name"])
            if found is not None and not builders.controlled_by(found, uid):
                held.append(f"{obj['kind']} {meta['name']}")
            elif found is not None:
                ours[builders.key(obj)] = found
        if held:
            raise NameConflict(
                f"{', '.join(held)} already exist(s) and belong(s) to someone else; "
                "Conch does not take over objects it did not create: rename the ModelService "
                "or remove those objects"
            )
        return ours

    def _apply(
        self,
        raw: Manifest,
        wanted: tuple[Manifest, ...],
        observed: Mapping[tuple[str, str], Manifest],
        at_once: bool = False,
        created: Mapping[tuple[str, str], Manifest] | None = None,
    ) -> None:
        """Server-side apply, each conditional on the object as observed (all at once when
        the plan allows it); one Event per reconcile for what changed. An object `_prepare`
        created is not written again."""
        changes: dict[Applied, list[str]] = {Applied.CREATED: [], Applied.UPDATED: []}
        created = created or {}

        def apply(obj: Manifest) -> Applied:
            if builders.key(obj) in created:
                return Applied.CREATED
            result, answer = self.kube.apply(obj, observed.get(builders.key(obj)))
            if result is Applied.CREATED:
                self.fresh.created(raw["metadata"]["uid"], answer)
            return result

        for obj, result in zip(wanted, self._each(at_once, apply, wanted), strict=True):
            if result is not Applied.UNCHANGED:
                changes[result].append(f"{obj['kind']} {obj['metadata']['name']}")
        for result, objects in changes.items():
            if objects:
                self._record(raw, "Normal", result.value, f"{result.value} {', '.join(objects)}")

    # -- ModelVersion status -------------------------------------------------------------

    @staticmethod
    def version_users_changed(before: Manifest | None, after: Manifest | None) -> list[Key]:
        """The ModelVersions whose usedBy a change of one watched ModelService may change."""

        def using(obj: Manifest | None) -> set[str]:
            if obj is None or obj["metadata"].get("deletionTimestamp"):
                return set()
            return plan.uses(obj)

        namespace = (after or before or {"metadata": {}})["metadata"].get("namespace", "")
        changed = using(before) ^ using(after)
        keys = [(MODEL_VERSION.kind, namespace, v) for v in sorted(changed)]
        was, now = serves_elsewhere(before), serves_elsewhere(after)
        for where in sorted(set(was) | set(now)):  # the catalog's servedBy of those
            gone_or_new = set(was.get(where, ())) ^ set(now.get(where, ()))
            keys += [(MODEL_VERSION.kind, where, v) for v in sorted(gone_or_new)]
        return keys

    def version_users(self, namespace: str, version: str) -> list[str]:
        """The ModelServices of `namespace` that use `version`, from the watched ModelServices
        (their index: `service_index`)."""
        return [
            s["metadata"]["name"] for s in self.watched.services.indexed(namespace, USES + version)
        ]

    def version_consumers(self, namespace: str, version: str) -> list[Key]:
        """Every ModelService, in any namespace, whose spec serves `version` of `namespace`
        (its own or, through spec.modelNamespace, another's) or which still runs it."""
        return [
            (MODEL_SERVICE.kind, s["metadata"]["namespace"], s["metadata"]["name"])
            for s in self.watched.services.values()
            if (
                ((s.get("spec") or {}).get("modelNamespace") or s["metadata"]["namespace"])
                == namespace
                and (s.get("spec") or {}).get("modelVersion") == version
            )
            or (s["metadata"]["namespace"] == namespace and version in plan.uses(s))
        ]

    def _reconcile_version(self, namespace: str, name: str) -> Next:
        """ModelVersion status: which ModelServices use it, from the watched ModelServices
        (whose every change of use queues the versions involved: `version_users_changed`)."""
        raw = self.watched.versions.get(namespace, name)  # queued by its informer: seen there
        if raw is None:
            self._catalog(namespace, name, None, [])
            return Next()
        used_by = self.version_users(namespace, name)
        current = raw.get("status") or {}
        wanted = {
            **current,
            "observedGeneration": raw["metadata"].get("generation"),
            "usedBy": used_by,
        }
        if wanted != current:
            self.kube.patch_status(MODEL_VERSION, namespace, name, wanted)
        elsewhere = [
            (s["metadata"]["namespace"], s["metadata"]["name"])
            for s in self.watched.services.indexed(namespace, ELSEWHERE + name)
        ]
        self._catalog(namespace, name, raw, [(namespace, s) for s in used_by] + elsewhere)
        return Next()

    def _catalog(
        self, namespace: str, name: str, mv: Manifest | None, served_by: list[tuple[str, str]]
    ) -> None:
        """Keep the CatalogEntry of a shared ModelVersion equal to what it publishes; remove
        it when the version is private or gone. An entry the operator did not write (an
        admin's) is never rewritten or deleted. Entries are read from their informer: an
        apply on a stale one is refused (409) and retried, never blind."""
        entries = self.watched.catalog
        if entries is None or not entries.served:
            return
        current = entries.get("", catalog.entry_name(namespace, name))
        if current is not None and not catalog.is_mirror(current):
            log.warning("CatalogEntry %s is not the operator's: left alone", name)
            return
        if mv is None or not catalog.is_shared(mv):
            if current is not None:
                self.kube.delete(current)
                log.info("%s/%s: removed from the catalog", namespace, name)
            return
        wanted = builders.stamped(catalog.mirror(mv, served_by))
        if builders.differs(wanted, current):
            self.kube.apply(wanted, current)
            log.info("%s/%s: published in the catalog", namespace, name)

    def _write_invalid(self, raw: Manifest, message: str) -> None:
        if plan.reported_invalid(raw, message):
            return
        meta = raw["metadata"]
        cond = {
            "type": reasons.READY,
            "status": "False",
            "reason": reasons.INVALID_SPEC,
            "message": message[:MESSAGE_MAX],
            "lastTransitionTime": _now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        written = self.kube.patch_status(
            MODEL_SERVICE, meta["namespace"], meta["name"], {"conditions": [cond]}
        )
        self._wrote(raw, written)
        self._record(raw, "Warning", reasons.INVALID_SPEC, message)

    def _record(self, regarding: Manifest, type_: str, reason: str, note: str) -> None:
        """One funnel for decisions: a log line and an Event on the ModelService (posted in
        the background by `self.events`)."""
        meta = regarding["metadata"]
        log.info("%s/%s %s: %s", meta["namespace"], meta["name"], reason, note)
        self.events.add(events.Pending(events.regarding(regarding), type_, reason, note))

    def _post(self, event: events.Pending) -> None:
        self.kube.event(event.regarding, event.type, event.reason, "Reconcile", event.note)


USAGE_REFUSALS = frozenset(
    {
        reasons.USAGE_NOT_GRANTED,
        reasons.TERMS_NOT_ACCEPTED,
        reasons.TERMS_EXPIRED,
        reasons.CREDENTIALS_NOT_SHARED,
        reasons.REQUEST_LOGGING_NOT_ALLOWED,
    }
)
"""Ready reasons that mean a version's terms refuse the service: it serves none of it."""


USES, ELSEWHERE = "uses/", "elsewhere/"
"""Prefixes of `service_index` values."""


def service_index(service: Manifest) -> list[tuple[str, str]]:
    """Where a watched ModelService is found (`Informer.indexed`): (its namespace, USES +
    version) for each version of its own namespace it uses (status.usedBy), and (the other
    namespace, ELSEWHERE + version) for each version it serves from there while its terms let
    it (the catalog's servedBy). A reconcile of a version then reads its users, not every
    service."""
    meta = service["metadata"]
    if meta.get("deletionTimestamp"):
        return []
    own = [(meta.get("namespace", ""), USES + v) for v in sorted(plan.uses(service))]
    return own + [
        (where, ELSEWHERE + v)
        for where, versions in sorted(serves_elsewhere(service).items())
        for v in sorted(versions)
    ]


def serves_elsewhere(service: Manifest | None) -> dict[str, set[str]]:
    """{another namespace: its versions} a ModelService serves through spec.modelNamespace
    while their terms let it (the catalog's servedBy; the owner's usedBy lists only its own
    namespace's services)."""
    if service is None or service["metadata"].get("deletionTimestamp"):
        return {}
    spec = service.get("spec") or {}
    where = spec.get("modelNamespace")
    if not where or where == service["metadata"].get("namespace"):
        return {}
    recorded = service.get("status") or {}
    conditions = recorded.get("conditions") or []
    ready = [c for c in conditions if isinstance(c, dict) and c.get("type") == reasons.READY]
    if ready and ready[0].get("reason") in USAGE_REFUSALS:
        return {where: set()}
    view = {
        "metadata": {"namespace": where},
        "spec": {"modelVersion": spec.get("modelVersion")},
        "status": recorded,
    }
    return {where: plan.uses(view)}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)
