"""Several hosts on one machine: Linux network namespaces, one per host, each joined to this (the control)
host by a veth pair. Inside a host, 127.0.0.1 is its own (its servers may use the same port as another
host's); the control host's servers bound to 0.0.0.0 are reached at the host's `gateway` address.
Killing every process in a namespace is a host dying: its worker, its flow runs and their servers at once.
Needs root and iproute2 (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from dataclasses import dataclass

REQUIRE_ENV = "TRBENCH_REQUIRE_NETNS"  # CI sets it: no namespaces there fails the tests instead of skipping them


@dataclass(frozen=True)
class Host:
    name: str      # the namespace's name
    address: str   # the host's own address on its link to the control host
    gateway: str   # the control host's address on that link: where the host reaches the shared servers


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def unavailable() -> str | None:
    """Why namespaces cannot be made here (one phrase), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    return None


def make_hosts(count: int) -> list[Host]:
    """count namespaces, each with loopback up and a /24 link to the control host; names unique to this process."""
    tag = os.getpid() % 100000
    hosts: list[Host] = []
    try:
        for i in range(count):
            host = Host(name=f"trb{tag}h{i}", address=f"10.231.{i + 1}.2", gateway=f"10.231.{i + 1}.1")
            outer, inner = f"trb{tag}v{i}", f"trb{tag}p{i}"
            _ip("netns", "add", host.name)
            hosts.append(host)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", host.name)
            _ip("addr", "add", f"{host.gateway}/24", "dev", outer)
            _ip("link", "set", outer, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/24", "dev", inner)
            _ip("-n", host.name, "link", "set", inner, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
    except BaseException:
        remove_hosts(hosts)
        raise
    return hosts


def pids(host: Host) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True, text=True, timeout=30)
    return [int(p) for p in done.stdout.split()]


def kill_host(host: Host) -> list[int]:
    """SIGKILL to every process of the host at once, as a power cut would stop them; the pids killed."""
    killed = pids(host)
    for pid in killed:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed


def remove_hosts(hosts: list[Host]) -> None:
    """Kill what is left in each namespace and delete it (its end of the veth pair goes with it, and the pair)."""
    for host in hosts:
        kill_host(host)
        subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=30)
