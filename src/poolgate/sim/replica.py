"""One simulated vLLM server's state: engine, runner, metrics, adapters, faults, readiness."""

from __future__ import annotations

import random
import time
import zlib

from poolgate.sim.engine import Engine, EngineConfig
from poolgate.sim.errors import model_not_found
from poolgate.sim.faults import Faults
from poolgate.sim.kv_events import ZmqEventPublisher, replica_endpoints
from poolgate.sim.metrics import SimMetrics
from poolgate.sim.options import SimOptions
from poolgate.sim.responses import VLLM_VERSION
from poolgate.sim.runner import EngineRunner


class Replica:
    """Everything one listening port serves; built inside a running event loop."""

    def __init__(self, options: SimOptions, index: int) -> None:
        self.options = options
        self.index = index
        self.seed = options.replica_seed(index)
        self.model_name = options.model_names[0]
        self.fingerprint = f"vllm-{VLLM_VERSION}-{zlib.crc32(options.model.encode()):08x}"
        self.rng = random.Random(self.seed)
        self.adapters: dict[str, str] = dict(options.lora_modules)
        self.faults = Faults(options.faults, self.seed ^ 0x5EED)
        self.created = int(time.time())
        self.in_flight = 0
        self.ready = options.startup_delay <= 0
        self.engine = Engine(EngineConfig(
            profile=options.profile_spec, model_key=options.model,
            max_num_seqs=options.num_seqs, kv_cache_blocks=options.num_blocks,
            block_size=options.block_size, max_loras=options.max_loras,
            max_waiting=options.max_waiting,
        ))
        self.metrics = SimMetrics(self.model_name, options.model_len, options.max_loras,
                                  options.cache_info())
        self.kv_publisher: ZmqEventPublisher | None = None
        kv = options.kv_events
        if kv is not None and kv.active:
            # Replica i is its own vLLM server; its ports are offset by i, like vLLM's DP ranks.
            endpoint, replay = replica_endpoints(kv, index + 1)[index]
            self.kv_publisher = ZmqEventPublisher(kv, endpoint, replay)
        self.runner = EngineRunner(
            self.engine, self.metrics, options.time_scale,
            kv_events=self.kv_publisher.publish if self.kv_publisher is not None else None)

    @property
    def healthy(self) -> bool:
        """Ready and not failed by a fault."""
        return self.ready and not self.faults.settings.unhealthy

    def resolve_model(self, requested: str | None) -> str | None:
        """The adapter a request's `model` names (None for the base model); 404 if unknown."""
        if requested is None or requested in self.options.model_names:
            return None
        if requested in self.adapters:
            return requested
        raise model_not_found(requested, list(self.options.model_names))

    def reported_model(self, adapter: str | None) -> str:
        """The `model` field of responses: the adapter, or the first served name."""
        return adapter if adapter is not None else self.model_name

    def new_id(self, prefix: str) -> str:
        """A request id in vLLM's format (seeded, so runs reproduce)."""
        return f"{prefix}-{self.rng.getrandbits(64):016x}"

    def start(self) -> None:
        """Start the engine loop (and the startup delay, if any)."""
        self.runner.start()

    def mark_ready(self) -> None:
        """End the startup delay."""
        self.ready = True

    async def close(self) -> None:
        """Stop the engine loop and the KV-event publisher."""
        await self.runner.close()
        if self.kv_publisher is not None:
            self.kv_publisher.close()
            self.kv_publisher = None
