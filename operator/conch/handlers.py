"""kopf wiring and the work queue: watches feed the queue; workers run the controller.
Nothing decides here.

kopf runs the process (startup, cleanup, liveness, logging) and watches nothing: every
watch is a `conch.informer` (ModelServices, ModelVersions, grants, the catalog's
cluster-wide CatalogEntries, and the owned kinds by a server-side label selector), so each
kind is listed and watched once, kopf holds no per-object state, and an operator restart
re-lists, reconciles, and writes nothing when nothing changed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
from dataclasses import dataclass, field
from typing import Any, cast

from conch import plan, rest
from conch.builders.meta import SERVICE_LABEL, Manifest
from conch.controller import Controller, Key
from conch.errors import ConchError
from conch.kopf_alone import kopf
from conch.kube import MODEL_SERVICE, MODEL_VERSION
from conch.leader import LeaderElector
from conch.workqueue import WorkQueue

log = logging.getLogger("conch.operator")
SERVICE, VERSION_KIND = MODEL_SERVICE.kind, MODEL_VERSION.kind
USERS_BATCH = 1.0
"""Seconds a ModelVersion whose users changed waits before its status.usedBy and catalog
entry are written: services arriving together are written once (each write carries the
whole list)."""


@dataclass
class Runtime:
    """Everything the handlers share, kept in kopf's memo (no module-level state)."""

    controller: Controller
    workers: int = 8
    elector: LeaderElector | None = None
    """With leader election, only the replica holding the Lease reconciles; a standby
    keeps its watches warm and starts as soon as it wins."""
    queue: WorkQueue = field(default_factory=WorkQueue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    executor: concurrent.futures.ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Watch at once; lead (in the background, so kopf's startup and liveness go on),
        then reconcile."""
        self.executor = concurrent.futures.ThreadPoolExecutor(self.workers, "reconcile")
        self.controller.events.start()
        self._watch(asyncio.get_running_loop())
        self.tasks = [asyncio.create_task(self._lead())]

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Every change queues what it concerns (the callbacks run on the watch threads)."""

        def queue(key: Key, urgent: bool = False, after: float = 0) -> None:
            loop.call_soon_threadsafe(self.queue.add, key, after, urgent)

        self.controller.requeue = queue  # a create sent off the reconcile has ended

        def owned_changed(before: Manifest | None, after: Manifest | None) -> None:
            obj = after or before or {"metadata": {}}
            if service := obj["metadata"].get("labels", {}).get(SERVICE_LABEL):
                queue((SERVICE, obj["metadata"]["namespace"], service))

        def service_changed(before: Manifest | None, after: Manifest | None) -> None:
            self.controller.seen(before, after)
            meta = (after or before or {"metadata": {}})["metadata"]
            queue((SERVICE, meta["namespace"], meta["name"]), urgent=plan.spec_ahead(after))
            for key in self.controller.version_users_changed(before, after):
                queue(key, after=USERS_BATCH)

        def version_changed(before: Manifest | None, after: Manifest | None) -> None:
            meta = (after or before or {"metadata": {}})["metadata"]
            key = (VERSION_KIND, meta["namespace"], meta["name"])
            if not plan.version_matters(before, after):
                # e.g. its status.usedBy, written as new users arrive: looked at with them
                queue(key, after=USERS_BATCH)
                return
            queue(key)
            for key in self.controller.version_consumers(meta["namespace"], meta["name"]):
                queue(key)

        def grant_changed(before: Manifest | None, after: Manifest | None) -> None:
            meta = (after or before or {"metadata": {}})["metadata"]
            for key in self.controller.consumers(meta["namespace"]):
                queue(key)

        scopes = self.controller.watched.versions.scopes

        def catalog_changed(before: Manifest | None, after: Manifest | None) -> None:
            """An entry listed at start, or changed by someone: its ModelVersion's reconcile
            rewrites it, or removes it when the version went private or away while we were
            down. Only for namespaces this operator watches (it cannot see the others').
            Looked at with the version's users (each of the operator's own writes of the
            entry comes back here)."""
            source = ((after or before or {}).get("spec") or {}).get("modelVersion") or {}
            namespace, name = str(source.get("namespace", "")), str(source.get("name", ""))
            if namespace and name and (None in scopes or namespace in scopes):
                queue((VERSION_KIND, namespace, name), after=USERS_BATCH)

        self.controller.watched.start(
            owned_changed, service_changed, version_changed, grant_changed, catalog_changed
        )

    async def _lead(self) -> None:
        loop = asyncio.get_running_loop()
        if self.elector is not None:
            if not await loop.run_in_executor(None, self.elector.acquire):
                return  # stopped before winning
            # a leader that cannot renew stops at once, before another may take over
            self.elector.keep(on_lost=lambda: os._exit(1))
        await self._run()

    async def _run(self) -> None:
        """Once every informer has listed, start the workers: a reconcile never mistakes
        an unlisted child for a missing one."""
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(self.executor, self.controller.watched.wait_synced):
            log.warning("some watches have not listed yet; reconciling anyway")
        self.tasks += [asyncio.create_task(self._work()) for _ in range(self.workers)]

    async def stop(self) -> None:
        if self.elector is not None:
            self.elector.stop(release=True)  # a standby takes over within one retry
        self.controller.watched.stop()
        self.controller.creates.stop()
        self.controller.events.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.executor:
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = cast(Key, await self.queue.get())
            kind, namespace, name = key
            try:
                outcome = await loop.run_in_executor(self.executor, self.controller.reconcile, key)
            except ConchError as error:
                delay = self.queue.done(key, failed=True)
                log.warning("%s %s/%s: %s (retry in %.1fs)", kind, namespace, name, error, delay)
            except Exception:
                delay = self.queue.done(key, failed=True)
                log.exception(
                    "%s %s/%s: unexpected error (retry in %.1fs)", kind, namespace, name, delay
                )
            else:
                self.queue.done(key, requeue_after=outcome.requeue_after)


def _runtime(memo: kopf.Memo) -> Runtime:
    runtime: Runtime = memo["runtime"]
    return runtime


@kopf.on.login()
def _login(**_: Any) -> kopf.ConnectionInfo:
    """kopf logs in at start (it watches nothing itself) with the same credentials as Conch's:
    `conch.rest.login`, called again by kopf when the API answers 401."""
    return rest.login().info


@kopf.on.startup()
async def _start(memo: kopf.Memo, settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.peering.standalone = True
    settings.scanning.disabled = True  # least privilege: no CRD or namespace list/watch
    settings.posting.level = logging.WARNING
    settings.networking.request_timeout = 60
    _runtime(memo).start()


@kopf.on.cleanup()
async def _stop(memo: kopf.Memo, **_: Any) -> None:
    await _runtime(memo).stop()
