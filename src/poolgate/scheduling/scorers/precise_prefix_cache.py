"""`precise-prefix-cache-scorer`: prefer the endpoint whose KV cache holds the request's prefix,
as the model servers' own KV-cache events say.

What it does: tokenizes the request exactly as the model server will (`tokenizer`), cuts the
token ids into blocks of the server's block size, keys them as the event index does
(`datalayer/kv_index.py`: chained from a root seeded with the LoRA adapter), and scores
`score = leading blocks the endpoint holds / blocks of the prompt` (at most `maxBlocks`;
0 when the prompt is shorter than one block). The index is fed by the servers' `BlockStored`
/ `BlockRemoved` / `AllBlocksCleared` events, which the gateway subscribes to (one ZMQ SUB
socket per endpoint; every gateway replica reads the same events).

Fallback: an endpoint whose events cannot be trusted — none received yet, or events lost that
the replay socket could not return, until its stream has been consistent for `holdSeconds` —
is scored from an approximate index instead: the blocks of the requests this gateway sent it
(`on_picked`), as `prefix-cache-scorer` does. So lost events never leave wrong picks behind,
and events never fail a request.

Load bounds: the same hotspot bounds as `prefix-cache-scorer` (`loadBoundAbs`,
`loadBoundRel`, `loadBoundMean`, `loadSignal`, `prefillBound`; `_load_bound.py`): an endpoint
over a bound gets score 0, so load decides instead of affinity piling onto a hot endpoint.
`hotPrefix` (`prefix/replication.py`) spreads a hot prefix group over more holders early.
Category: affinity. Intent: reuse the servers' prefix caches as they really are, including
blocks cached by requests that did not come through this gateway replica.
Inputs: the request body, target model's LoRA adapter; the KV-event index; `Endpoint.in_flight`,
`Signals.waiting`, `Endpoint.awaiting_first_token` for the bounds.
Configuration (llm-d's names where llm-d has the setting):
  `tokenProcessorConfig.blockSize` (unset: the block size the events announce; set: it must
  equal the server's, and an endpoint whose events announce another is scored from the
  approximate index, with a warning), `kvEventsConfig.topicFilter` (""),
  `kvEventsConfig.discoverPods` (true; false, one socket all servers connect to, is refused),
  `kvEventsConfig.podDiscoveryConfig.socketPort` (5557) and `.replayPort` (unset: no replay),
  `kvEventsConfig.endpoints` / `.replayEndpoints` (endpoint `host:port` -> `tcp://` address,
  for fleets not on one port per host), `kvEventsConfig.holdSeconds` (10),
  `kvEventsConfig.replayTimeoutSeconds` (5), `tokenizer` (`simulator`, or a Hugging Face
  tokenizer directory), `maxBlocks` (256), `maxBlocksPerEndpoint` (65536, the event index's
  bound per endpoint), and the load bounds above (unset / 0.5 / unset /
  `waiting+in-flight` / unset).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pydantic import AliasChoices, Field, field_validator

from poolgate.datalayer.kv_events import (
    DEFAULT_HOLD,
    DEFAULT_REPLAY_TIMEOUT,
    DEFAULT_SOCKET_PORT,
    KVEventsSource,
)
from poolgate.datalayer.kv_index import (
    DEFAULT_MAX_BLOCKS_PER_ENDPOINT,
    KVBlockIndex,
    block_keys,
    root_key,
)
from poolgate.scheduling._params import PluginParams
from poolgate.scheduling.interfaces import (
    BuildContext,
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    Scorer,
    TypedName,
)
from poolgate.scheduling.prefix.index import PrefixIndex
from poolgate.scheduling.scorers._load_bound import LoadBound, LoadBoundParams
from poolgate.scheduling.tokenizer import RequestTokenizer, TokenizerError, load_tokenizer

log = logging.getLogger(__name__)

TYPE = "precise-prefix-cache-scorer"
# vLLM's default block size, used until the events announce one (when none is configured).
DEFAULT_BLOCK_SIZE = 16


class PodDiscoveryParams(PluginParams):
    """Where each endpoint's publisher listens: its own host, these ports."""

    socket_port: int = Field(DEFAULT_SOCKET_PORT, ge=1, le=65535)
    replay_port: int | None = Field(None, ge=1, le=65535)


def _check_addresses(value: dict[str, str]) -> dict[str, str]:
    for endpoint, url in value.items():
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{endpoint!r} is not an endpoint host:port")
        if not url.startswith(("tcp://", "ipc://")):
            raise ValueError(f"{url!r} (for {endpoint}) is not a tcp:// or ipc:// address")
    return value


class KVEventsParams(PluginParams):
    """How the gateway subscribes to the model servers' KV events."""

    topic_filter: str = ""
    discover_pods: bool = True
    pod_discovery_config: PodDiscoveryParams = Field(default_factory=PodDiscoveryParams)
    endpoints: dict[str, str] = Field(default_factory=dict)
    replay_endpoints: dict[str, str] = Field(default_factory=dict)
    hold_seconds: float = Field(DEFAULT_HOLD, ge=0.0)
    replay_timeout_seconds: float = Field(DEFAULT_REPLAY_TIMEOUT, gt=0.0)

    @field_validator("discover_pods")
    @classmethod
    def _connect_mode_only(cls, value: bool) -> bool:
        if not value:
            raise ValueError(
                "false (every server publishing to one socket the gateway binds) is not "
                "supported: poolgate connects to each endpoint's publisher (podDiscoveryConfig."
                "socketPort, or endpoints for explicit addresses)")
        return value

    @field_validator("endpoints", "replay_endpoints")
    @classmethod
    def _addresses(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_addresses(value)


class TokenProcessorParams(PluginParams):
    """How token ids become blocks."""

    block_size: int | None = Field(
        None, ge=1, validation_alias=AliasChoices("blockSize", "block_size", "blockSizeTokens"))


class Params(LoadBoundParams):
    """Parameters of `precise-prefix-cache-scorer` (the load bounds' are in `LoadBoundParams`)."""

    token_processor_config: TokenProcessorParams = Field(default_factory=TokenProcessorParams)
    kv_events_config: KVEventsParams = Field(default_factory=KVEventsParams)
    tokenizer: str = "simulator"
    max_blocks: int = Field(256, ge=1)
    max_blocks_per_endpoint: int = Field(DEFAULT_MAX_BLOCKS_PER_ENDPOINT, ge=1)

    @field_validator("tokenizer")
    @classmethod
    def _loadable(cls, value: str) -> str:
        try:
            load_tokenizer(value)  # cached: the factory's own load costs nothing more
        except TokenizerError as e:
            raise ValueError(str(e)) from None
        return value

    def source(self) -> KVEventsSource:
        """The event source these parameters describe (one subscriber per distinct source)."""
        kv = self.kv_events_config
        return KVEventsSource(
            socket_port=kv.pod_discovery_config.socket_port,
            replay_port=kv.pod_discovery_config.replay_port,
            endpoints=tuple(sorted(kv.endpoints.items())),
            replay_endpoints=tuple(sorted(kv.replay_endpoints.items())),
            topic=kv.topic_filter, hold=kv.hold_seconds,
            replay_timeout=kv.replay_timeout_seconds,
            max_blocks_per_endpoint=self.max_blocks_per_endpoint)


class PrecisePrefixCacheScorer:
    """Leading blocks held per endpoint, from the servers' KV events (see the module docstring)."""

    category = Category.AFFINITY

    def __init__(self, name: str, params: Params, tokenizer: RequestTokenizer,
                 index: KVBlockIndex) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.kv_events_source = params.source()
        self.index = index
        self.tokenizer = tokenizer
        self.block_size = params.token_processor_config.block_size
        self.max_blocks = params.max_blocks
        self.bound = LoadBound(params)
        self.hot = self.bound.hot_prefixes()
        self.approx = PrefixIndex()
        self._ids_memo = f"precise-ids:{tokenizer.name}"
        self._mismatched: set[str] = set()

    def current_block_size(self) -> int:
        """The block size requests are cut into: configured, else announced, else vLLM's 16."""
        return self.block_size or self.index.last_block_size or DEFAULT_BLOCK_SIZE

    def token_ids(self, req: LLMRequest) -> list[int] | None:
        """The request's prompt token ids (tokenized once per request, then memoised)."""
        memo = req.memo
        key = self._ids_memo
        if key in memo:
            ids: list[int] | None = memo[key]
            return ids
        ids = self.tokenizer.token_ids(req.body) if req.body is not None else None
        memo[key] = ids
        return ids

    def keys(self, req: LLMRequest, block_size: int) -> list[int]:
        """The request's block keys at `block_size` (memoised per request)."""
        memo = req.memo
        key = f"precise-keys:{block_size}:{self.max_blocks}"
        found: list[int] | None = memo.get(key)
        if found is None:
            ids = self.token_ids(req)
            found = (block_keys(ids, block_size, root_key(req.lora), self.max_blocks)
                     if ids else [])
            memo[key] = found
        return found

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        block_size = self.current_block_size()
        keys = self.keys(req, block_size)
        if not keys:
            return {}
        precise, fallback = self._split(endpoints, block_size, cycle.now)
        index = self.index
        matches = index.match_lengths(keys, precise) if precise else {}
        if fallback:
            guessed = self.approx.match_lengths(keys, fallback)
            if guessed:
                matches.update(guessed)
        if not matches:
            return {}
        if self.hot is not None:
            matches = self.hot.shape(keys, matches, endpoints)
        matches = self.bound.apply(matches, endpoints)
        total = len(keys)
        return {a: n / total for a, n in matches.items()}

    def _split(self, endpoints: Sequence[Endpoint], block_size: int,
               now: float) -> tuple[frozenset[str], list[str]]:
        """The candidates scored from the events, and those scored from the approximate index
        (events untrusted, or blocks of another size)."""
        index = self.index
        addresses = [e.address for e in endpoints]
        precise = index.usable_set(now).intersection(addresses)
        sizes = index.block_sizes
        if sizes and (len(sizes) > 1 or block_size not in sizes):
            size_of = index.block_size
            mismatched = {a for a in precise if size_of(a) not in (None, block_size)}
            for address in mismatched:
                size = size_of(address)
                assert size is not None
                self._mismatch(address, size, block_size)
            precise = precise - mismatched
        if len(precise) == len(addresses):
            return precise, []
        return precise, [a for a in addresses if a not in precise]

    def on_picked(self, req: LLMRequest, address: str) -> None:
        """Record the request's blocks for `address` in the approximate (fallback) index."""
        keys = self.keys(req, self.current_block_size())
        if keys:
            self.approx.add(address, keys)
            if self.hot is not None:
                self.hot.observe(keys)

    def retain(self, addresses: Sequence[str]) -> None:
        """Forget endpoints that left the pool (the event index follows the subscriptions)."""
        self.approx.retain(addresses)
        if self.hot is not None:
            self.hot.retain(addresses)
        self._mismatched.intersection_update(addresses)

    def _mismatch(self, address: str, announced: int, configured: int) -> None:
        if address not in self._mismatched:
            self._mismatched.add(address)
            log.warning("%s: %s announces KV blocks of %d tokens, but blockSize is %d; its "
                        "events are not used (approximate prefix routing for it)",
                        self.typed_name, address, announced, configured)


def create(name: str, params: Params, ctx: BuildContext) -> Scorer:
    """Factory for the registry: the index comes from the gateway's KV-event hub."""
    source = params.source()
    index = (ctx.kv_events.index_for(source) if ctx.kv_events is not None
             else KVBlockIndex(source.max_blocks_per_endpoint))
    return PrecisePrefixCacheScorer(name, params, load_tokenizer(params.tokenizer), index)
