"""poolgate.scheduling: the endpoint picker (filters -> weighted scorers -> picker) and shedding.

Typical use by the proxy:

    scheduler = build_scheduler(SchedulerConfig.from_dict(cfg), store)
    req = request_from_body(body, target_model=target, adapters=pool_adapters, ...)
    result = scheduler.pick(req, pool_addresses, now=time.monotonic())
    scheduler.on_picked(req, result.address)
"""

from poolgate.scheduling.builder import build_profile, build_scheduler
from poolgate.scheduling.config import PluginConfig, SchedulerConfig
from poolgate.scheduling.errors import NoEndpointAvailable, RequestShed, SchedulerConfigError
from poolgate.scheduling.interfaces import Endpoint, LLMRequest, PickResult
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.scheduling.request import lora_of, request_from_body
from poolgate.scheduling.saturation import SaturationDetector, should_shed
from poolgate.scheduling.scheduler import Scheduler, SchedulerProfile

__all__ = [
    "BUILTIN_PROFILES",
    "Endpoint",
    "LLMRequest",
    "NoEndpointAvailable",
    "PickResult",
    "PluginConfig",
    "RequestShed",
    "SaturationDetector",
    "Scheduler",
    "SchedulerConfig",
    "SchedulerConfigError",
    "SchedulerProfile",
    "build_profile",
    "build_scheduler",
    "lora_of",
    "request_from_body",
    "should_shed",
]
