"""Command lines of the simulator, the gateway and the peers."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmarks.suite.commands import (
    PEERS,
    Peer,
    SimSpec,
    display,
    replica_urls_shown,
    serve_argv,
    sim_argv,
    time_scaled_gateway_flags,
)


def test_sim_argv_has_every_fleet_flag() -> None:
    spec = SimSpec(replicas=8, profile="h100-llama3-8b", time_scale=0.2, kv_cache_blocks=1024,
                   max_num_seqs=64, seed=3)
    argv = sim_argv(spec, 9000, Path("/tmp/c/endpoints.yaml"))
    assert argv[:3] == [sys.executable, "-m", "poolgate"]
    text = " ".join(argv)
    for part in ("sim --replicas 8 --port 9000 --host 127.0.0.1", "--profile h100-llama3-8b",
                 "--time-scale 0.2", "--kv-cache-blocks 1024", "--max-num-seqs 64", "--seed 3",
                 "--endpoints-file /tmp/c/endpoints.yaml", "--endpoints-label app=sim",
                 "--model sim-llama"):
        assert part in text


def test_sim_argv_leaves_profile_defaults_alone() -> None:
    argv = sim_argv(SimSpec(replicas=1, profile="zero"), 9000, Path("e.yaml"))
    assert "--kv-cache-blocks" not in argv and "--max-num-seqs" not in argv


def test_serve_argv_adds_the_profile_only_when_given() -> None:
    plain = serve_argv(Path("cfg"), 1, 2, None)
    assert "--scheduler-profile" not in plain
    assert plain[3:] == ["serve", "-f", "cfg", "--port", "1", "--admin-port", "2", "--host",
                         "127.0.0.1", "--access-log", "off", "--no-watch", "--log-level",
                         "warning"]
    assert serve_argv(Path("cfg"), 1, 2, "round-robin")[-2:] == ["--scheduler-profile",
                                                                  "round-robin"]


def test_peer_argv_per_router() -> None:
    venv = Path("/v")
    workers = ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    vllm, sglang = PEERS
    assert vllm.argv(venv, 10, 11, workers, "round_robin") == [
        "/v/bin/vllm-router", "--host", "127.0.0.1", "--port", "10", "--worker-urls", *workers,
        "--policy", "round_robin", "--prometheus-host", "127.0.0.1", "--prometheus-port", "11",
        "--log-level", "warning"]
    argv = sglang.argv(venv, 10, 11, workers, "cache_aware")
    assert argv[:2] == ["/v/bin/sglang-router", "launch"]
    assert argv[argv.index("--policy") + 1] == "cache_aware"
    assert argv[argv.index("--log-level") + 1] == "warn"
    assert all(p.policies == ("round_robin", "cache_aware") for p in PEERS)
    assert Peer("x").executable(venv) == Path("/v/bin/x")


def test_display_shortens_interpreter_and_paths() -> None:
    cwd = Path("/work/repo")
    argv = [sys.executable, "-m", "poolgate", "serve", "-f", "/work/repo/x y/cfg", "--port", "1"]
    assert display(argv, cwd) == "python -m poolgate serve -f 'x y/cfg' --port 1"
    assert display(["/elsewhere/bin/r"], cwd) == "/elsewhere/bin/r"


def test_gateway_scrape_flags_follow_the_time_scale() -> None:
    assert time_scaled_gateway_flags(1.0) == ()
    assert time_scaled_gateway_flags(0.2) == ("--scrape-interval", "0.25",
                                              "--metrics-staleness", "10")
    argv = serve_argv(Path("cfg"), 1, 2, "default", time_scaled_gateway_flags(0.5))
    assert argv[-6:] == ["--scrape-interval", "0.1", "--metrics-staleness", "4",
                         "--scheduler-profile", "default"]


def test_replica_urls_shown_are_shell_arithmetic() -> None:
    assert replica_urls_shown(2) == ["http://127.0.0.1:$((SIM_PORT+0))",
                                     "http://127.0.0.1:$((SIM_PORT+1))"]
    assert display(["r", "--worker-urls", *replica_urls_shown(1), "--port", "$PORT"]) == (
        "r --worker-urls http://127.0.0.1:$((SIM_PORT+0)) --port $PORT")
