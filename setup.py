"""Builds poolgate, with the request path's hot modules compiled by mypyc where that is possible
(docs/gateway.md, "Data plane cost"); everything else is in pyproject.toml.

- A wheel or a plain install (`pip install .`, the container image) compiles them when mypyc
  (a build requirement) and a C compiler are there; any failure to compile installs the same
  modules as plain Python instead, which behave the same (`make test` runs the suite on the plain
  modules, `make test-compiled` on a compiled install).
- An editable install (`pip install -e .`, what `make` does) keeps them plain, so that an edited
  module takes effect without a rebuild; POOLGATE_COMPILE=1 compiles them in place there too
  (then rebuild after every edit), POOLGATE_COMPILE=0 never compiles.
"""

from __future__ import annotations

import os
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Every proxied request runs through these (the listener and the upstream client, the gateway's
# stages, the relay, the lease, the recording of its metrics).
HOT_MODULES = [
    "src/poolgate/http/server.py",
    "src/poolgate/http/client.py",
    "src/poolgate/proxy/gateway.py",
    "src/poolgate/proxy/context.py",
    "src/poolgate/proxy/lease.py",
    "src/poolgate/proxy/relay.py",
    "src/poolgate/proxy/headers.py",
    "src/poolgate/proxy/inference.py",
    "src/poolgate/proxy/recording.py",
    "src/poolgate/observability/histogram.py",
    "src/poolgate/observability/inference.py",
    "src/poolgate/observability/live.py",
    "src/poolgate/observability/meter.py",
    "src/poolgate/observability/metrics.py",
    "src/poolgate/observability/usage.py",
    # The pick (Scheduler.pick and the default profile's plugins, the endpoint views they read);
    # the plugins' pydantic parameter models stay in plain modules (mypyc cannot compile them).
    "src/poolgate/datalayer/store.py",
    "src/poolgate/scheduling/interfaces.py",
    "src/poolgate/scheduling/pick_log.py",
    "src/poolgate/scheduling/scheduler.py",
    "src/poolgate/scheduling/timed.py",
    "src/poolgate/scheduling/filters/fresh_metrics.py",
    "src/poolgate/scheduling/filters/lora_capable.py",
    "src/poolgate/scheduling/pickers/_seeded.py",
    "src/poolgate/scheduling/pickers/max_score.py",
    "src/poolgate/scheduling/pickers/random_choice.py",
    "src/poolgate/scheduling/pickers/round_robin.py",
    "src/poolgate/scheduling/pickers/weighted_random.py",
    "src/poolgate/scheduling/prefix/hashing.py",
    "src/poolgate/scheduling/prefix/index.py",
    "src/poolgate/scheduling/scorers/_load_bound.py",
    "src/poolgate/scheduling/scorers/_minmax.py",
    "src/poolgate/scheduling/scorers/in_flight.py",
    "src/poolgate/scheduling/scorers/kv_cache_utilization.py",
    "src/poolgate/scheduling/scorers/lora_affinity.py",
    "src/poolgate/scheduling/scorers/prefix_cache.py",
    "src/poolgate/scheduling/scorers/queue_depth.py",
]
# mypy types the modules for mypyc without the project's configuration (its pydantic plugin, like
# the other runtime dependencies, is not installed where wheels are built): imports that are not
# there count as untyped, and only the compiled modules are checked.
MYPYC_OPTIONS = ["--config-file=", "--ignore-missing-imports", "--follow-imports=silent"]
_BUILDS = {"bdist_wheel", "build", "build_ext", "install", "editable_wheel", "develop"}
_EDITABLE = {"editable_wheel", "develop"}


def _compiling() -> bool:
    setting = os.environ.get("POOLGATE_COMPILE", "")
    commands = set(sys.argv[1:])
    if setting == "0" or not commands & _BUILDS:
        return False  # (metadata and build requirements are asked for without a build)
    return setting == "1" if commands & _EDITABLE else True


def _extensions() -> list[Extension]:
    if not _compiling():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        _say("mypyc is not installed")
        return []
    try:
        return list(mypycify([*MYPYC_OPTIONS, *HOT_MODULES], opt_level="3"))
    except (Exception, SystemExit) as e:  # a type error, a construct mypyc cannot compile
        _say(f"mypyc failed: {e}")
        return []


def _say(why: str) -> None:
    print(f"poolgate: {why}; the hot modules stay plain Python", file=sys.stderr)


class OptionalBuildExt(build_ext):
    """The compiled modules all together or none: without a C compiler or Python's headers, the
    plain modules are installed (they share one mypyc runtime library, so a partial set would not
    import)."""

    def run(self) -> None:
        self._drop_stale()
        try:
            super().run()
        except Exception as e:  # CompileError, LinkError, PlatformError (setuptools' own types)
            for path in self.get_outputs():
                Path(path).unlink(missing_ok=True)
            self.extensions = []
            _say(f"compiling failed: {e}")

    def _drop_stale(self) -> None:
        """Removes the extension modules an earlier build left in the build directory that this
        one does not make (a module since taken out of HOT_MODULES, an older runtime library):
        the wheel would ship them beside the new ones, and Python imports a module's extension
        before its .py."""
        keep = {Path(p).resolve() for p in self.get_outputs()}
        root = Path(self.build_lib)
        for suffix in EXTENSION_SUFFIXES:
            for path in root.rglob(f"*{suffix}") if root.is_dir() else ():
                if path.resolve() not in keep:
                    path.unlink()


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
