"""Leader election on a coordination.k8s.io Lease, so two operator replicas never
reconcile at once and a standby takes over when the leader dies.

The rule is client-go's: a Lease held by someone else is taken once its holder has not
renewed it for `leaseDurationSeconds`; every write carries the resourceVersion it read, so
of two candidates racing for a free Lease exactly one wins (the other gets 409 and waits).
The leader renews every `retry` seconds; if it cannot renew within `renew_deadline` it
must stop reconciling at once (`on_lost`), before anyone else may take the Lease.
A leader that shuts down cleanly releases the Lease, so a standby takes over within one
`retry` instead of a whole lease duration.

`next_step` is the pure decision; `LeaderElector` does the I/O.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from conch.kube import Kind
from conch.rest import Rest, RestError

__all__ = ["LeaderElector", "LeaseView", "Step", "next_step"]

log = logging.getLogger(__name__)

Step = Literal["create", "renew", "take", "wait"]
LEASE = Kind("coordination.k8s.io/v1", "Lease", "leases")


@dataclass(frozen=True)
class LeaseView:
    """What the election reads from a Lease."""

    holder: str | None
    renewed: dt.datetime | None
    duration: dt.timedelta


def next_step(lease: LeaseView | None, me: str, now: dt.datetime) -> Step:
    """create: no Lease yet; renew: it is ours; take: free or expired; wait: someone
    else holds it and renewed it within its duration."""
    if lease is None:
        return "create"
    if lease.holder == me:
        return "renew"
    if not lease.holder or lease.renewed is None or lease.renewed + lease.duration <= now:
        return "take"
    return "wait"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _micro_time(when: dt.datetime) -> str:
    """A MicroTime as the API parses it: exactly six fractional digits, Z."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class LeaderElector:
    def __init__(
        self,
        api: Rest,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 10,
        renew_deadline: float = 7.0,
        retry: float = 2.0,
    ) -> None:
        if not retry < renew_deadline < lease_seconds:
            raise ValueError("need retry < renew_deadline < lease_seconds")
        self.api = api
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_deadline, self.retry = lease_seconds, renew_deadline, retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one attempt -----------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One read and at most one write; True when we hold the Lease afterwards."""
        try:
            current = self._read()
        except RestError as error:
            log.warning("reading Lease %s/%s: %s", self.namespace, self.name, error)
            return False
        view = None if current is None else _view(current)
        now = _now()
        step = next_step(view, self.identity, now)
        if step == "wait":
            return False
        old = (current or {}).get("spec") or {}
        transitions = int(old.get("leaseTransitions") or 0)
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "renewTime": _micro_time(now),
            "acquireTime": old.get("acquireTime") if step == "renew" else _micro_time(now),
            "leaseTransitions": transitions
            if step == "renew" or current is None
            else transitions + 1,
        }
        try:
            if current is None:
                metadata = {"name": self.name, "namespace": self.namespace}
                body = {"apiVersion": LEASE.api_version, "kind": LEASE.kind, "metadata": metadata}
                self.api.request("POST", LEASE.path(self.namespace), body={**body, "spec": spec})
            else:  # keeps metadata.resourceVersion: a lost race is a 409
                self._replace({**current, "spec": spec})
        except RestError as error:
            if error.status not in (409, 422):
                log.warning("writing Lease %s/%s: %s", self.namespace, self.name, error)
            return False
        if step != "renew":
            log.info("%s became the leader (Lease %s/%s)", self.identity, self.namespace, self.name)
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            _, lease = self.api.request("GET", LEASE.path(self.namespace, self.name))
        except RestError as error:
            if error.status == 404:
                return None
            raise
        return dict(lease)

    def _replace(self, lease: dict[str, Any]) -> None:
        self.api.request("PUT", LEASE.path(self.namespace, self.name), body=lease)

    # -- the loops -------------------------------------------------------------------------

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until we lead (True) or `stop` is set (False)."""
        stop = stop or self._stop
        while not stop.is_set():
            if self.try_acquire_or_renew():
                return True
            stop.wait(self.retry)
        return False

    def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew in the background; call `on_lost` (once) when a renewal cannot succeed
        within `renew_deadline`, so the caller stops before another replica may take over."""

        def renew() -> None:
            last = _now()
            while not self._stop.wait(self.retry):
                if self.try_acquire_or_renew():
                    last = _now()
                elif (_now() - last).total_seconds() >= self.renew_deadline:
                    log.error("%s lost the leader Lease", self.identity)
                    on_lost()
                    return

        self._thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with `release`, hand the Lease over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.retry + 5)
        if release:
            self._release()

    def _release(self) -> None:
        try:
            current = self._read()
            spec = (current or {}).get("spec") or {}
            if current is None or spec.get("holderIdentity") != self.identity:
                return
            released = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1}
            self._replace({**current, "spec": released})
        except RestError as error:
            log.warning("releasing Lease %s/%s: %s", self.namespace, self.name, error)


def _view(lease: dict[str, Any]) -> LeaseView:
    spec = lease.get("spec") or {}
    return LeaseView(
        holder=spec.get("holderIdentity"),
        renewed=_parse_time(spec.get("renewTime")),
        duration=dt.timedelta(seconds=spec.get("leaseDurationSeconds") or 0),
    )
