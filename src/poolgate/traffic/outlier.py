"""Passive outlier detection with Envoy's consecutive-error semantics, per backend cluster.

What counts (`split_external_local_origin_errors` false, the default): every response status,
and failures without a response mapped as Envoy maps them: a connect failure, reset or refused
stream is a 503, a per-try timeout a 504. Any non-5xx status resets the counters. A circuit
breaker overflow never counts (it says nothing about the endpoint).

- `consecutive_5xx` (default 5) consecutive 5xx eject the endpoint at once;
- `consecutive_gateway_failure` (default off) consecutive 502/503/504 eject it too;
- with `split_external_local_origin_errors`, failures without a response count separately
  towards `consecutive_local_origin_failure` (default 5) and any response resets that count.

An ejection lasts `base_ejection_time` (30 s) x the endpoint's ejection multiplier, capped at
`max_ejection_time` (default 300 s, at least the base). Each ejection raises the multiplier by
one; each `sweep()` (run it every `interval`, default 3 s) lowers it by one for an endpoint that
has stayed in since at least one interval after its last ejection ended. An ejection ends
exactly when its time is up (Envoy: at the first interval tick after that).

An ejection is refused when it would put more than `max_ejection_percent` (10) of the
endpoints out, except that one endpoint can always be ejected while none is
(`always_eject_one`, true here as in Envoy before 1.31; small pools would otherwise never eject).

Panic: when fewer than `healthy_panic_threshold` percent (50) of the endpoints are usable (not
ejected, not failing active checks), `available()` returns every endpoint, as Envoy does.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from poolgate.traffic.retry import FailureKind


@dataclass(frozen=True, slots=True)
class OutlierSpec:
    """Outlier-detection settings (`BackendTrafficPolicy.spec.healthCheck.passive`)."""

    consecutive_5xx: int = 5
    consecutive_gateway_failure: int | None = None  # None or 0: off
    consecutive_local_origin_failure: int = 5
    split_external_local_origin_errors: bool = False
    interval: float = 3.0
    base_ejection_time: float = 30.0
    max_ejection_time: float | None = None  # None: max(300 s, base_ejection_time)
    max_ejection_percent: int = 10
    always_eject_one: bool = True
    healthy_panic_threshold: float = 50.0

    def __post_init__(self) -> None:
        for name in ("consecutive_5xx", "consecutive_local_origin_failure"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"outlier {name} must be an integer >= 1, got {value!r}")
        gw = self.consecutive_gateway_failure
        if gw is not None and (isinstance(gw, bool) or not isinstance(gw, int) or gw < 0):
            raise ValueError(f"outlier consecutive_gateway_failure must be >= 0, got {gw!r}")
        for name in ("interval", "base_ejection_time"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"outlier {name} must be a positive duration, got {value!r}")
        if self.max_ejection_time is not None and self.max_ejection_time < self.base_ejection_time:
            raise ValueError("outlier max_ejection_time cannot be smaller than base_ejection_time")
        if not 0 <= self.max_ejection_percent <= 100:
            raise ValueError(f"outlier max_ejection_percent must be 0..100, "
                             f"got {self.max_ejection_percent!r}")
        if not 0 <= self.healthy_panic_threshold <= 100:
            raise ValueError(f"outlier healthy_panic_threshold must be 0..100, "
                             f"got {self.healthy_panic_threshold!r}")

    @property
    def effective_max_ejection_time(self) -> float:
        """The cap on one ejection's length."""
        if self.max_ejection_time is not None:
            return self.max_ejection_time
        return max(300.0, self.base_ejection_time)


class EjectionType(enum.Enum):
    """Why an endpoint was ejected."""

    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    CONSECUTIVE_LOCAL_ORIGIN_FAILURE = "consecutive_local_origin_failure"


class _Endpoint:
    """One endpoint's counters and ejection state."""

    __slots__ = ("backoff", "consecutive_5xx", "consecutive_gateway", "consecutive_local",
                 "ejected_at", "ejected_until", "last_unejected", "num_ejections")

    def __init__(self) -> None:
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.consecutive_local = 0
        self.backoff = 0  # the ejection-time multiplier
        self.num_ejections = 0
        self.ejected_at: float | None = None
        self.ejected_until: float | None = None
        self.last_unejected: float | None = None

    def reset_counters(self) -> None:
        self.consecutive_5xx = self.consecutive_gateway = self.consecutive_local = 0


_FAILURE_STATUS = {FailureKind.CONNECT_FAILURE: 503, FailureKind.RESET: 503,
                   FailureKind.REFUSED_STREAM: 503, FailureKind.TIMEOUT: 504}


class OutlierDetector:
    """Tracks one cluster's endpoints and ejects the ones that keep failing; pure, `now` in."""

    def __init__(self, spec: OutlierSpec | None = None) -> None:
        self.spec = spec if spec is not None else OutlierSpec()
        self._endpoints: dict[str, _Endpoint] = {}
        self.ejections_total: dict[EjectionType, int] = dict.fromkeys(EjectionType, 0)
        self.ejections_overflow = 0  # ejections refused by max_ejection_percent

    # -- membership -----------------------------------------------------------------------------

    def update_endpoints(self, endpoints: Iterable[str]) -> None:
        """Set the cluster's endpoints (discovery changed); state of kept ones survives."""
        wanted = list(endpoints)
        keep = set(wanted)
        for address in [a for a in self._endpoints if a not in keep]:
            del self._endpoints[address]
        for address in wanted:
            self._endpoints.setdefault(address, _Endpoint())

    # -- signals --------------------------------------------------------------------------------

    def record(self, endpoint: str, result: int | FailureKind | str, now: float) -> EjectionType | None:
        """Account one attempt's result: an HTTP status or a `FailureKind`. Returns the
        ejection it caused, if any."""
        self._expire(now)
        state = self._endpoints.setdefault(endpoint, _Endpoint())
        if isinstance(result, bool):
            raise TypeError("record() takes an HTTP status or a FailureKind, not a bool")
        if isinstance(result, int):
            status = result
            local_failure = False
        else:
            failure = FailureKind(result)
            if failure is FailureKind.OVERFLOW:
                return None
            status = _FAILURE_STATUS[failure]
            local_failure = True
        if self.spec.split_external_local_origin_errors:
            if local_failure:
                state.consecutive_local += 1
                if state.consecutive_local >= self.spec.consecutive_local_origin_failure:
                    state.consecutive_local = 0
                    return self._eject(endpoint, state, EjectionType.CONSECUTIVE_LOCAL_ORIGIN_FAILURE,
                                       now)
                return None
            state.consecutive_local = 0  # a response means the connection worked
        return self._count_status(endpoint, state, status, now)

    def _count_status(self, endpoint: str, state: _Endpoint, status: int,
                      now: float) -> EjectionType | None:
        if not 500 <= status <= 599:
            state.consecutive_5xx = state.consecutive_gateway = 0
            return None
        ejection: EjectionType | None = None
        gateway_limit = self.spec.consecutive_gateway_failure
        if status in (502, 503, 504):
            state.consecutive_gateway += 1
            if gateway_limit and state.consecutive_gateway >= gateway_limit:
                state.consecutive_gateway = 0
                ejection = self._eject(endpoint, state, EjectionType.CONSECUTIVE_GATEWAY_FAILURE,
                                       now)
        else:
            state.consecutive_gateway = 0
        state.consecutive_5xx += 1
        if state.consecutive_5xx >= self.spec.consecutive_5xx:
            state.consecutive_5xx = 0
            ejection = self._eject(endpoint, state, EjectionType.CONSECUTIVE_5XX, now) or ejection
        return ejection

    def _eject(self, endpoint: str, state: _Endpoint, kind: EjectionType,
               now: float) -> EjectionType | None:
        if state.ejected_until is not None:
            return None  # already out
        ejected = sum(1 for s in self._endpoints.values() if s.ejected_until is not None)
        allowed = 100.0 * (ejected + 1) / len(self._endpoints) <= self.spec.max_ejection_percent
        if not allowed and not (self.spec.always_eject_one and ejected == 0):
            self.ejections_overflow += 1
            return None
        base = self.spec.base_ejection_time
        cap = self.spec.effective_max_ejection_time
        if state.backoff * base < cap + base:
            state.backoff += 1
        state.num_ejections += 1
        state.ejected_at = now
        state.ejected_until = now + min(base * state.backoff, cap)
        self.ejections_total[kind] += 1
        return kind

    def _expire(self, now: float) -> None:
        """End ejections whose time is up."""
        for state in self._endpoints.values():
            if state.ejected_until is not None and now >= state.ejected_until:
                state.last_unejected = state.ejected_until
                state.ejected_at = state.ejected_until = None
                # Fresh counters, so a few new errors do not re-eject at once.
                state.reset_counters()

    def sweep(self, now: float) -> None:
        """The periodic tick (every `interval`): end due ejections, decay multipliers."""
        self._expire(now)
        for state in self._endpoints.values():
            if (state.ejected_until is None and state.backoff > 0
                    and state.last_unejected is not None
                    and now - state.last_unejected >= self.spec.interval):
                state.backoff -= 1

    # -- queries --------------------------------------------------------------------------------

    def is_ejected(self, endpoint: str, now: float) -> bool:
        """Whether `endpoint` is ejected at `now`."""
        state = self._endpoints.get(endpoint)
        return state is not None and state.ejected_until is not None and now < state.ejected_until

    def ejection_multiplier(self, endpoint: str) -> int:
        """The endpoint's current ejection-time multiplier."""
        state = self._endpoints.get(endpoint)
        return 0 if state is None else state.backoff

    def in_panic(self, endpoints: Sequence[str], now: float,
                 unhealthy: Collection[str] = ()) -> bool:
        """Whether too few of `endpoints` are usable, so that all of them are used."""
        if not endpoints:
            return False
        usable = sum(1 for e in endpoints if e not in unhealthy and not self.is_ejected(e, now))
        return 100.0 * usable / len(endpoints) < self.spec.healthy_panic_threshold

    def available(self, endpoints: Sequence[str], now: float,
                  unhealthy: Collection[str] = ()) -> list[str]:
        """The endpoints to balance over: the usable ones, or all of them in panic.

        `unhealthy` are endpoints failing active health checks; they count against the panic
        threshold like ejected ones. The result may be empty (answer `NoHealthyEndpoint`).
        """
        if self.in_panic(endpoints, now, unhealthy):
            return list(endpoints)
        return [e for e in endpoints if e not in unhealthy and not self.is_ejected(e, now)]

    def __repr__(self) -> str:
        parts = []
        for address in sorted(self._endpoints):
            s = self._endpoints[address]
            state = f"ejected_until={s.ejected_until:g}" if s.ejected_until is not None else "in"
            parts.append(f"{address}:{state},5xx={s.consecutive_5xx},gw={s.consecutive_gateway},"
                         f"x{s.backoff}")
        return f"<OutlierDetector {' '.join(parts) or 'empty'}>"
