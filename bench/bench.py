#!/usr/bin/env python3
"""Berth against runc, crun and youki, side by side.

Runs every runtime on the same busybox bundle, interleaved (the order rotates every iteration),
and reports per measure min / median / max and the ratio of medians to crun. Wall time comes
from perf_counter around posix_spawn + wait4; CPU time (user + sys) and peak RSS come from the
rusage wait4 returns for the runtime process, which includes every descendant it reaped. The
driver is a child subreaper, so a container init left behind by `create` is reaped here and its
CPU time is reported on its own ("init") and in the lifecycle total.

All runtimes run in a private mount namespace where /sys/fs/cgroup/unified (the cgroup2 part of
this machine's hybrid layout, which crun refuses) is replaced by an empty tmpfs: equal
conditions for all. `berth-native` runs Berth in the host's mount namespace on the hybrid
layout as it is; `berth-ro` runs Berth from a read-only bind mount of its binary (a "protected
install": no CVE-2019-5736 protection step at all).

Only the standard library; Python 3.11. Run through bench/run.sh (which installs the peers and
builds Berth), or directly: `sudo python3 bench/bench.py --help`.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SECCOMP_PROFILE = REPO / "tests/fixtures/docker-20.10-default.json"
BUSYBOX = Path("/bin/busybox")

# ---------------------------------------------------------------------------------------------
# Small syscall wrappers (ctypes: Python 3.11 has no os.unshare/os.setns).

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def sys_unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def sys_setns(fd: int, nstype: int) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def sys_mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    r = _libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data))
    _check(r, f"mount {target}")


def sys_umount2(target: str, flags: int) -> None:
    _check(_libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")


def set_child_subreaper() -> None:
    _check(_libc.prctl(ctypes.c_int(PR_SET_CHILD_SUBREAPER), ctypes.c_ulong(1), 0, 0, 0), "prctl")


# ---------------------------------------------------------------------------------------------
# Data


class BenchError(Exception):
    pass


class Hang(BenchError):
    """A runtime command still running after --timeout seconds (it was killed)."""


@dataclass
class Sample:
    wall_ms: float
    cpu_ms: float
    maxrss_kib: int
    code: int = 0
    minflt: int = 0  # page faults
    nvcsw: int = 0  # voluntary context switches (blocking waits)

    def __add__(self, o: "Sample") -> "Sample":
        return Sample(self.wall_ms + o.wall_ms, self.cpu_ms + o.cpu_ms, max(self.maxrss_kib, o.maxrss_kib),
                      0, self.minflt + o.minflt, self.nvcsw + o.nvcsw)


@dataclass
class Variant:
    name: str  # row label
    runtime: str  # berth, crun, runc, youki
    binary: str
    ns: str  # "private" (cgroup v1 only) or "hybrid" (the host's cgroup mounts as they are)
    root: str = ""
    env: dict = field(default_factory=dict)
    note: str = ""
    supports_exec: bool = True
    run_leaves_state: bool = False
    seccomp_cache: str | None = None  # berth only: BERTH_SECCOMP_CACHE
    source: str = ""  # the installed binary this variant runs (a copy of)
    block_sigchld: bool = False  # start the runtime with SIGCHLD blocked (youki 0.7.0's `run`)


def cpu_ms(ru) -> float:
    return (ru.ru_utime + ru.ru_stime) * 1000.0


# ---------------------------------------------------------------------------------------------
# The runner: spawns runtime commands in the right mount namespace and times them.


class Runner:
    def __init__(self, work: Path, spawnd: str, timeout: float, verbose: bool):
        self.work = work
        self.timeout = timeout
        self.spawnd_bin = spawnd
        self.spawnd: dict[str, subprocess.Popen] = {}  # variant name -> its launcher
        self.verbose = verbose
        self.devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        self.ns_fd: dict[str, int] = {}
        self.current_ns = "host"
        self.reaped: dict[int, object] = {}  # pid -> rusage, for processes reaped out of order
        self.live: dict[str, set[str]] = {}  # variant name -> ids that may still exist
        self.logs: dict[str, int] = {}
        self.counter = 0
        self.fake_unified: str | None = None
        self.scrubbed = 0
        self.prefix = f"bb{os.getpid()}"

    # --- namespaces -------------------------------------------------------------------------

    def setup_namespaces(self, state: str, ro_binaries: list[str]) -> None:
        """Two mount namespaces, both private to the driver (they go away with it):

        - "hybrid": `/` made rprivate, a tmpfs on `state` (the runtimes' --root directories,
          as /run is a tmpfs on a normal host); the host's cgroup mounts as they are.
        - "private": a copy of "hybrid" (same tmpfs) where /sys/fs/cgroup/unified, the cgroup2
          part of the hybrid layout that crun refuses, is replaced by an empty tmpfs, and the
          "protected install" binaries are bind-mounted read-only onto themselves.
        """
        self.ns_fd["host"] = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        sys_unshare(CLONE_NEWNS)
        sys_mount(None, "/", None, MS_REC | MS_PRIVATE)
        sys_mount("tmpfs", state, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
        self.ns_fd["hybrid"] = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        sys_unshare(CLONE_NEWNS)
        unified = "/sys/fs/cgroup/unified"
        if os.path.ismount(unified):
            sys_umount2(unified, MNT_DETACH)
            sys_mount("tmpfs", unified, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755")
            self.fake_unified = unified
        for b in ro_binaries:
            sys_mount(b, b, None, MS_BIND)
            sys_mount(None, b, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
        self.ns_fd["private"] = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.current_ns = "private"

    def enter(self, ns: str) -> None:
        if ns != self.current_ns:
            sys_setns(self.ns_fd[ns], CLONE_NEWNS)
            self.current_ns = ns

    # --- processes --------------------------------------------------------------------------

    def new_id(self, v: Variant) -> str:
        self.counter += 1
        return f"{self.prefix}-{re.sub('[^a-z0-9-]+', '-', v.name).strip('-')}-{self.counter}"

    def log_path(self, v: Variant) -> Path:
        return self.work / "logs" / (re.sub("[^a-z0-9-]+", "-", v.name).strip("-") + ".log")

    def log_fd(self, v: Variant) -> int:
        if v.name not in self.logs:
            p = self.log_path(v)
            self.logs[v.name] = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        return self.logs[v.name]

    def log_tail(self, v: Variant, n: int = 12) -> str:
        p = self.log_path(v)
        try:
            lines = p.read_text(errors="replace").splitlines()
            # Berth's warnings about runc's default ambient capabilities are noise here.
            return "\n".join([ln for ln in lines if "capabilities.ambient" not in ln][-n:])
        except OSError:
            return ""

    @staticmethod
    def env_of(v: Variant) -> dict:
        return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **v.env}

    def spawn(self, v: Variant, args: list[str], wrap: list[str] = ()) -> int:
        """Starts a runtime command straight from the driver (the parallel lanes)."""
        self.enter(v.ns)
        argv = [*wrap, v.binary, "--root", v.root, *args]
        actions = [
            (os.POSIX_SPAWN_DUP2, self.devnull, 0),
            (os.POSIX_SPAWN_DUP2, self.devnull, 1),
            (os.POSIX_SPAWN_DUP2, self.log_fd(v), 2),
        ]
        mask = [signal.SIGCHLD] if v.block_sigchld else []
        return os.posix_spawn(argv[0], argv, self.env_of(v), file_actions=actions, setsigmask=mask)

    def launcher(self, v: Variant) -> subprocess.Popen:
        """The variant's own spawnd: started in its mount namespace, with its environment."""
        p = self.spawnd.get(v.name)
        if p is None:
            self.enter(v.ns)
            p = subprocess.Popen([self.spawnd_bin], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 env=self.env_of(v), cwd="/")
            self.spawnd[v.name] = p
        return p

    def timed(self, v: Variant, args: list[str], check: bool = True, wrap: list[str] = ()) -> Sample:
        """Runs one runtime command to completion through the variant's launcher: wall time,
        CPU (user + sys) of the runtime and every descendant it reaped, peak RSS."""
        p = self.launcher(v)
        ms = str(int(self.timeout * 1000))
        strings = [ms, "1" if v.block_sigchld else "0", "/dev/null", str(self.log_path(v)),
                   *wrap, v.binary, "--root", v.root, *args]
        req = f"{len(strings)}\n".encode() + b"".join(x.encode() + b"\0" for x in strings)
        p.stdin.write(req)
        p.stdin.flush()
        line = p.stdout.readline().decode()
        if not line:
            raise BenchError(f"{v.name}: the launcher died")
        code, wall_ns, ut, st, rss, timed_out, minflt, nvcsw, _ = (int(x) for x in line.split())
        if timed_out:
            raise Hang(f"{v.name}: `{' '.join(args)}` still running after {self.timeout:g}s; killed")
        if check and code != 0:
            raise BenchError(f"{v.name}: `{' '.join(args)}` exited {code}\n{self.log_tail(v)}")
        return Sample(wall_ns / 1e6, (ut + st) / 1000.0, rss, code, minflt, nvcsw)

    def status(self, v: Variant, args: list[str]) -> int:
        return self.timed(v, args, check=False).code

    def close(self) -> None:
        for p in self.spawnd.values():
            p.stdin.close()
            p.wait()
        self.spawnd.clear()

    def wait_exit(self, pid: int, timeout: float = 20.0):
        """Waits for a container init (reparented to us, the subreaper) to exit; its rusage."""
        if pid in self.reaped:
            return self.reaped.pop(pid)
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return self.reaped.pop(pid, None)
        try:
            r, _, _ = select.select([pidfd], [], [], timeout)
            if not r:
                raise Hang(f"container init {pid} did not exit within {timeout}s")
        finally:
            os.close(pidfd)
        try:
            _, _, ru = os.wait4(pid, 0)
            return ru
        except ChildProcessError:
            return self.reaped.pop(pid, None)  # not ours (or reaped meanwhile)

    def scrub(self) -> None:
        """crun (v1 mode) writes <id>/cgroup.procs into the stand-in tmpfs for the cgroup2 part
        of the hybrid layout and cannot remove them; clear those between iterations so that no
        runtime works in a growing directory."""
        if not self.fake_unified:
            return
        self.enter("private")
        live = set().union(*self.live.values()) if self.live else set()
        for name in os.listdir(self.fake_unified):
            if name not in live:
                shutil.rmtree(os.path.join(self.fake_unified, name), ignore_errors=True)
                self.scrubbed += 1

    def reap_strays(self) -> None:
        while True:
            try:
                pid, _, ru = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self.reaped[pid] = ru

    # --- container bookkeeping --------------------------------------------------------------

    def track(self, v: Variant, cid: str) -> None:
        self.live.setdefault(v.name, set()).add(cid)

    def untrack(self, v: Variant, cid: str) -> None:
        self.live.get(v.name, set()).discard(cid)

    def forget_new(self, v: Variant, before: set[str]) -> None:
        """After a hang: force-deletes the containers created since `before`."""
        self.reap_strays()
        for cid in self.live.get(v.name, set()) - before:
            self.force_delete(v, cid)

    def force_delete(self, v: Variant, cid: str) -> None:
        self.status(v, ["kill", cid, "KILL"])
        self.reap_strays()
        self.status(v, ["delete", "--force", cid])
        self.untrack(v, cid)


# ---------------------------------------------------------------------------------------------
# Bundles


def make_rootfs(rootfs: Path) -> None:
    for d in ("bin", "proc", "sys", "dev", "etc", "tmp", "root", "run"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, rootfs / "bin/busybox")
    for applet in ("true", "sleep", "sh"):
        os.symlink("busybox", rootfs / "bin" / applet)
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (rootfs / "etc/group").write_text("root:x:0:\n")


def base_config(runc: str | None, berth: str, tmp: Path) -> dict:
    """`runc spec`'s defaults (or `berth spec`'s where runc is absent), terminal off."""
    d = tmp / "spec"
    d.mkdir()
    if runc:
        subprocess.run([runc, "spec"], cwd=d, check=True)
    else:
        subprocess.run([berth, "spec", "--bundle", str(d)], check=True)
    cfg = json.loads((d / "config.json").read_text())
    shutil.rmtree(d)
    if not runc:
        # Make `berth spec` look like `runc spec`: a version every peer accepts, no cgroup ns.
        cfg["ociVersion"] = "1.0.2-dev"
        ns = cfg["linux"]["namespaces"]
        cfg["linux"]["namespaces"] = [n for n in ns if n["type"] != "cgroup"]
    cfg["process"]["terminal"] = False
    cfg["root"] = {"path": "rootfs", "readonly": True}
    return cfg


def make_bundles(work: Path, runc: str | None, berth: str) -> dict[str, Path]:
    rootfs = work / "rootfs"
    make_rootfs(rootfs)
    base = base_config(runc, berth, work)
    profile = json.loads(SECCOMP_PROFILE.read_text())
    bundles = {}
    for name, args, seccomp in (
        ("true", ["/bin/true"], None),
        ("sleep", ["/bin/sleep", "3600"], None),
        ("seccomp", ["/bin/true"], profile),
    ):
        b = work / f"bundle-{name}"
        b.mkdir()
        cfg = json.loads(json.dumps(base))
        cfg["root"]["path"] = str(rootfs)  # shared by all bundles (runc refuses a symlink)
        cfg["process"]["args"] = args
        if seccomp is not None:
            cfg["linux"]["seccomp"] = seccomp
        (b / "config.json").write_text(json.dumps(cfg, indent=1))
        bundles[name] = b
    return bundles


# ---------------------------------------------------------------------------------------------
# Statistics and tables


def summary(values: list[float]) -> dict:
    return {
        "n": len(values),
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
    }


def shuffled(variants: list[Variant], i: int, seed: int) -> list[Variant]:
    """Iteration i's order: a shuffle seeded by (seed, i). Rotating a fixed order would keep
    the same neighbours in every iteration, and a runtime can leave work behind that slows the
    next one (kernel clean-up after its container, an RCU grace period in flight): here youki
    once added ~12 ms to every Berth `create` that followed it. Shuffling spreads that evenly."""
    order = list(variants)
    random.Random(seed * 1_000_003 + i).shuffle(order)
    return order


# ---------------------------------------------------------------------------------------------
# Measures


class Bench:
    def __init__(self, args, runner: Runner, variants: list[Variant], bundles: dict[str, Path]):
        self.a = args
        self.r = runner
        self.variants = list(variants)
        self.bundles = bundles
        self.results: dict = {"measures": {}, "hangs": {}, "failures": {}}

    def progress(self, msg: str) -> None:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    def record(self, measure: str, variant: str, metric: str, values: list[float]) -> None:
        if not values:
            return  # every sample hung
        m = self.results["measures"].setdefault(measure, {})
        m.setdefault(variant, {})[metric] = {**summary(values), "samples": [round(x, 4) for x in values]}

    def prepare(self, v: Variant) -> None:
        if v.seccomp_cache:
            shutil.rmtree(v.seccomp_cache, ignore_errors=True)
            os.makedirs(v.seccomp_cache)

    # 0. what `run` leaves, whether `exec` exists; warms the page cache
    def calibrate(self) -> None:
        for v in self.variants:
            self.prepare(v)
            for attempt in range(3):
                cid = self.r.new_id(v)
                self.r.track(v, cid)
                before = set(self.r.live.get(v.name, ())) - {cid}
                try:
                    self.r.timed(v, ["run", "--bundle", str(self.bundles["true"]), cid])
                    break
                except Hang as e:
                    self.hang("calibrate", v, before, e)
            else:
                raise BenchError(f"{v.name}: `run` hung three times in a row")
            v.run_leaves_state = self.r.status(v, ["state", cid]) == 0
            if v.run_leaves_state:
                self.r.timed(v, ["delete", cid])
            self.r.untrack(v, cid)
            if v.runtime == "berth":
                v.supports_exec = self.r.status(v, ["exec", "--help"]) == 0
            self.r.reap_strays()

    def run_once(self, v: Variant, bundle: str = "true", cold: bool = False) -> Sample:
        if cold and v.seccomp_cache:
            shutil.rmtree(v.seccomp_cache)
            os.makedirs(v.seccomp_cache)
        cid = self.r.new_id(v)
        self.r.track(v, cid)
        s = self.r.timed(v, ["run", "--bundle", str(self.bundles[bundle]), cid])
        if v.run_leaves_state:
            s = s + self.r.timed(v, ["delete", cid])
        self.r.untrack(v, cid)
        return s

    def hang(self, measure: str, v: Variant, before: set[str], e: Hang) -> None:
        """Counts a hung command, cleans up after it; the sample is dropped."""
        print(f"[bench] {e}", file=sys.stderr, flush=True)
        h = self.results["hangs"].setdefault(measure, {})
        h[v.name] = h.get(v.name, 0) + 1
        self.r.forget_new(v, before)

    def failed(self, measure: str, v: Variant, before: set[str], e: Exception) -> None:
        """Counts a command that failed (a peer's flake must not end the run), cleans up after
        it; the sample is dropped. Every failure is listed under the tables."""
        print(f"[bench] {e}", file=sys.stderr, flush=True)
        f = self.results["failures"].setdefault(measure, {})
        f[v.name] = f.get(v.name, 0) + 1
        self.results.setdefault("failure_lines", []).append(
            f"{v.name}: {str(e).splitlines()[0]}")
        self.r.forget_new(v, before)

    def iterate(self, measure: str, variants: list[Variant], n: int, fn) -> None:
        for i in range(-self.a.warmup, n):
            for v in shuffled(variants, i, self.a.seed):
                before = set(self.r.live.get(v.name, ()))
                try:
                    fn(v, i >= 0)
                except Hang as e:
                    self.hang(measure, v, before, e)
                except BenchError as e:
                    self.failed(measure, v, before, e)
            self.r.reap_strays()
            self.r.scrub()

    # 1. run /bin/true, whole lifecycle
    def measure_run(self, name: str, bundle: str, variants: list[Variant], cold: bool = False) -> None:
        self.progress(f"{name}: {self.a.runs} interleaved iterations")
        data: dict[str, list[Sample]] = {v.name: [] for v in variants}

        def one(v: Variant, keep: bool) -> None:
            s = self.run_once(v, bundle, cold=cold)
            if keep:
                data[v.name].append(s)

        self.iterate(name, variants, self.a.runs, one)
        for vn, ss in data.items():
            self.record(name, vn, "wall_ms", [s.wall_ms for s in ss])
            self.record(name, vn, "cpu_ms", [s.cpu_ms for s in ss])
            self.record(name, vn, "maxrss_kib", [float(s.maxrss_kib) for s in ss])
            self.record(name, vn, "minflt", [float(s.minflt) for s in ss])
            self.record(name, vn, "nvcsw", [float(s.nvcsw) for s in ss])

    # 2. each phase: create, start, state, kill, delete
    def measure_phases(self) -> None:
        self.progress(f"phases: {self.a.runs} interleaved iterations")
        phases = ("create", "start", "state", "kill", "delete")
        data = {v.name: {p: [] for p in (*phases, "init", "total")} for v in self.variants}
        bundle = str(self.bundles["sleep"])

        def one(v: Variant, keep: bool) -> None:
            cid = self.r.new_id(v)
            pidfile = str(self.r.work / f"{cid}.pid")
            self.r.track(v, cid)
            t = {}
            t["create"] = self.r.timed(v, ["create", "--bundle", bundle, "--pid-file", pidfile, cid])
            t["start"] = self.r.timed(v, ["start", cid])
            t["state"] = self.r.timed(v, ["state", cid])
            t["kill"] = self.r.timed(v, ["kill", cid, "KILL"])
            init_pid = int(Path(pidfile).read_text().strip())
            ru = self.r.wait_exit(init_pid)
            t["delete"] = self.r.timed(v, ["delete", cid])
            self.r.untrack(v, cid)
            os.unlink(pidfile)
            if keep:
                for p in phases:
                    data[v.name][p].append(t[p])
                init = Sample(0.0, cpu_ms(ru) if ru else 0.0, ru.ru_maxrss if ru else 0)
                data[v.name]["init"].append(init)
                total = sum((t[p] for p in phases), init)
                data[v.name]["total"].append(total)

        self.iterate("phases", self.variants, self.a.runs, one)
        for vn, per in data.items():
            for p, ss in per.items():
                if p != "init":
                    self.record(f"phase:{p}", vn, "wall_ms", [s.wall_ms for s in ss])
                self.record(f"phase:{p}", vn, "cpu_ms", [s.cpu_ms for s in ss])
                if p in ("create", "init"):
                    self.record(f"phase:{p}", vn, "maxrss_kib", [float(s.maxrss_kib) for s in ss])

    # 3. exec /bin/true into a running container
    def measure_exec(self) -> None:
        variants = [v for v in self.variants if v.supports_exec]
        self.progress(f"exec: {self.a.runs} interleaved iterations ({', '.join(v.name for v in variants)})")
        if not variants:
            return
        targets = {}
        try:
            for v in variants:
                cid = self.r.new_id(v)
                pidfile = str(self.r.work / f"{cid}.pid")
                self.r.track(v, cid)
                self.r.timed(v, ["run", "--detach", "--bundle", str(self.bundles["sleep"]), "--pid-file", pidfile, cid])
                targets[v.name] = (cid, pidfile)
            data: dict[str, list[Sample]] = {v.name: [] for v in variants}

            def one(v: Variant, keep: bool) -> None:
                s = self.r.timed(v, ["exec", targets[v.name][0], "/bin/true"])
                if keep:
                    data[v.name].append(s)

            self.iterate("exec", variants, self.a.runs, one)
            for vn, ss in data.items():
                self.record("exec", vn, "wall_ms", [s.wall_ms for s in ss])
                self.record("exec", vn, "cpu_ms", [s.cpu_ms for s in ss])
                self.record("exec", vn, "maxrss_kib", [float(s.maxrss_kib) for s in ss])
        finally:
            for v in variants:
                if v.name in targets:
                    cid, pidfile = targets[v.name]
                    self.r.status(v, ["kill", cid, "KILL"])
                    try:
                        self.r.wait_exit(int(Path(pidfile).read_text().strip()))
                    except (OSError, ValueError):
                        pass
                    self.r.timed(v, ["delete", "--force", cid], check=False)
                    self.r.untrack(v, cid)

    # 4. N sequential runs, and the same N runs on 2 parallel lanes
    def measure_batches(self) -> None:
        n, rounds = self.a.batch, self.a.batch_rounds
        self.progress(f"batches: {n} runs sequential and on 2 lanes, {rounds} interleaved rounds")
        seq = {v.name: [] for v in self.variants}
        par = {v.name: [] for v in self.variants}
        for i in range(rounds):
            for v in shuffled(self.variants, i, self.a.seed):
                before = set(self.r.live.get(v.name, ()))
                try:
                    t0 = time.perf_counter_ns()
                    cpu = sum(self.run_once(v).cpu_ms for _ in range(n))
                    t1 = time.perf_counter_ns()
                    seq[v.name].append(Sample((t1 - t0) / 1e6, cpu, 0))
                except Hang as e:
                    self.hang(f"seq{n}", v, before, e)  # the whole batch is dropped
                self.r.reap_strays()
                self.r.scrub()
                try:
                    par[v.name].append(self.lanes(v, n, 2))
                except Hang as e:
                    self.hang(f"par{n}x2", v, before, e)
                self.r.scrub()
        for vn in seq:
            for key, ss in ((f"seq{n}", seq[vn]), (f"par{n}x2", par[vn])):
                if ss:
                    self.record(key, vn, "wall_ms", [s.wall_ms for s in ss])
                    self.record(key, vn, "cpu_ms", [s.cpu_ms for s in ss])

    def lanes(self, v: Variant, n: int, k: int) -> Sample:
        """n runs spread over k lanes that each run one container after another."""
        todo = [n // k + (1 if j < n % k else 0) for j in range(k)]
        lane_of: dict[int, tuple[int, str, str, int]] = {}  # pid -> (lane, id, phase, pidfd)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter_ns()

        def launch(lane: int) -> None:
            if todo[lane] == 0:
                return
            todo[lane] -= 1
            cid = self.r.new_id(v)
            self.r.track(v, cid)
            pid = self.r.spawn(v, ["run", "--bundle", str(self.bundles["true"]), cid])
            lane_of[pid] = (lane, cid, "run", os.pidfd_open(pid))

        for j in range(k):
            launch(j)
        while lane_of:
            # Each runtime process has a pidfd: readable once it exits (no polling, no stealing
            # of other children's statuses); a deadline catches hangs.
            fds = {pidfd: pid for pid, (_, _, _, pidfd) in lane_of.items()}
            ready, _, _ = select.select(list(fds), [], [], self.r.timeout)
            if not ready:
                for pid, (_, cid, phase, pidfd) in lane_of.items():
                    os.kill(pid, 9)
                    os.wait4(pid, 0)
                    os.close(pidfd)
                raise Hang(f"{v.name}: a lane's `{phase}` still running after {self.r.timeout:g}s; killed")
            for fd in ready:
                pid = fds[fd]
                _, status, _ = os.wait4(pid, 0)
                lane, cid, phase, pidfd = lane_of.pop(pid)
                os.close(pidfd)
                if os.waitstatus_to_exitcode(status) != 0:
                    raise BenchError(f"{v.name}: lane {phase} {cid} failed\n{self.r.log_tail(v)}")
                if phase == "run" and v.run_leaves_state:
                    dpid = self.r.spawn(v, ["delete", cid])
                    lane_of[dpid] = (lane, cid, "delete", os.pidfd_open(dpid))
                    continue
                self.r.untrack(v, cid)
                launch(lane)
        t1 = time.perf_counter_ns()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        return Sample((t1 - t0) / 1e6, cpu_ms(after) - cpu_ms(before), 0)

    # 8. syscalls per command (strace -f -c): where the work is, compared
    def profile(self) -> None:
        strace = shutil.which("strace")
        if not strace:
            self.progress("profile: strace is not installed; skipped")
            return
        self.progress("profile: strace -f -c of `run` and of each phase")
        out: dict = {}
        for v in self.variants:
            for attempt in range(3):
                before = set(self.r.live.get(v.name, ()))
                try:
                    out[v.name] = self.profile_one(v, strace)
                    break
                except Hang as e:
                    self.hang("profile", v, before, e)
        self.results["syscalls"] = out

    def profile_one(self, v: Variant, strace: str) -> dict:
        def wrap(tag: str) -> tuple[list[str], Path]:
            f = self.r.work / f"strace-{re.sub('[^a-z0-9-]+', '-', v.name)}-{tag}.txt"
            return [strace, "-f", "-c", "-o", str(f)], f

        res = {}
        self.prepare(v)
        cid = self.r.new_id(v)
        self.r.track(v, cid)
        w, f = wrap("run")
        self.r.timed(v, ["run", "--bundle", str(self.bundles["true"]), cid], wrap=w)
        if v.run_leaves_state:
            self.r.timed(v, ["delete", cid])
        self.r.untrack(v, cid)
        res["run"] = parse_strace_c(f.read_text())
        # The phases, on the sleep bundle. `create` is traced with its init (-f), so its
        # strace only ends when the init does: strace is started without waiting, and the
        # container is driven on once the runtime process under it has exited.
        cid = self.r.new_id(v)
        self.r.track(v, cid)
        w, fc = wrap("create")
        pid = self.r.spawn(v, ["create", "--bundle", str(self.bundles["sleep"]), cid], wrap=w)
        pidfd = os.pidfd_open(pid)
        done = False
        try:
            runtime_pid = traced_child(pid, v.binary, self.r.timeout)
            rfd = os.pidfd_open(runtime_pid)
            try:
                if not select.select([rfd], [], [], self.r.timeout)[0]:
                    raise Hang(f"{v.name}: traced `create` still running after {self.r.timeout:g}s")
            finally:
                os.close(rfd)
            for phase, args in (("start", ["start", cid]), ("state", ["state", cid]), ("kill", ["kill", cid, "KILL"])):
                w, fp = wrap(phase)
                self.r.timed(v, args, wrap=w)
                res[phase] = parse_strace_c(fp.read_text())
            if not select.select([pidfd], [], [], self.r.timeout)[0]:
                raise Hang(f"{v.name}: traced `create` outlived its container")
            done = True
        finally:
            if not done:
                os.kill(pid, 9)  # strace; its tracees are detached by the kernel
            os.close(pidfd)
            os.wait4(pid, 0)
        self.r.reap_strays()
        res["create"] = parse_strace_c(fc.read_text())
        w, fd = wrap("delete")
        self.r.timed(v, ["delete", cid], wrap=w)
        self.r.untrack(v, cid)
        res["delete"] = parse_strace_c(fd.read_text())
        return res

    def cleanup(self) -> list[str]:
        """Force-deletes whatever is still tracked, then anything left in the private roots."""
        problems = []
        for v in self.variants:
            for cid in list(self.r.live.get(v.name, ())):
                try:
                    self.r.force_delete(v, cid)
                except Exception as e:  # noqa: BLE001 — cleanup must go on
                    problems.append(f"{v.name}: {cid}: {e}")
        seen = set()
        for v in self.variants:
            if v.root in seen or not os.path.isdir(v.root):
                continue
            seen.add(v.root)
            for cid in os.listdir(v.root):
                if cid.startswith(self.r.prefix):
                    problems.append(f"{v.name}: {cid} was left in {v.root}; force-deleting")
                    self.r.force_delete(v, cid)
        self.r.reap_strays()
        return problems


# ---------------------------------------------------------------------------------------------
# Static facts: binary size and shared libraries


def binary_facts(path: str) -> dict:
    real = os.path.realpath(path)
    libs = []
    out = subprocess.run(["ldd", real], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        name = line.strip().split(" ")[0]
        if name and not name.startswith("linux-vdso") and "ld-linux" not in name:
            libs.append(name)
    if "not a dynamic executable" in out.stdout + out.stderr or "statically linked" in out.stdout:
        libs = ["none (statically linked)"]
    return {"path": real, "bytes": os.stat(real).st_size, "libs": libs}


def traced_child(tracer: int, binary: str, timeout: float) -> int:
    """The pid of the process a just-started strace runs: its child whose argv[0] is
    `binary` (strace also forks short-lived children of its own to probe the kernel)."""
    deadline = time.monotonic() + timeout
    path = f"/proc/{tracer}/task/{tracer}/children"
    while time.monotonic() < deadline:
        try:
            kids = Path(path).read_text().split()
        except OSError:
            kids = []
        for k in kids:
            try:
                argv0 = Path(f"/proc/{k}/cmdline").read_bytes().split(b"\0")[0].decode()
            except OSError:
                continue
            if argv0 == binary:
                return int(k)
        time.sleep(0.001)
    raise Hang(f"strace {tracer} started nothing within {timeout:g}s")


def parse_strace_c(text: str) -> dict:
    """`strace -c` output → {"calls": N, "errors": N, "by_syscall": {name: calls}}."""
    by = {}
    total = {"calls": 0, "errors": 0}
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5 or not f[0].replace(".", "").isdigit():
            continue
        name = f[-1]
        nums = f[3:-1]  # calls [errors]
        calls = int(nums[0])
        errors = int(nums[1]) if len(nums) > 1 else 0
        if name == "total":
            total = {"calls": calls, "errors": errors}
        else:
            by[name] = calls
    return {**total, "by_syscall": dict(sorted(by.items(), key=lambda kv: -kv[1]))}


def leftover_cgroups(prefix: str) -> list[str]:
    found = []
    base = Path("/sys/fs/cgroup")
    for ctrl in base.iterdir() if base.is_dir() else ():
        try:
            for p in ctrl.rglob(f"*{prefix}*"):
                if p.is_dir():
                    found.append(str(p))
        except OSError:
            pass
    return found


# ---------------------------------------------------------------------------------------------
# Report


MEASURE_TITLES = {
    "run": "`run /bin/true` (whole lifecycle{leaves})",
    "phase:create": "phase `create` (sleep bundle, --pid-file)",
    "phase:start": "phase `start`",
    "phase:state": "phase `state`",
    "phase:kill": "phase `kill KILL`",
    "phase:delete": "phase `delete`",
    "phase:init": "container init, reaped by the driver (CPU of the forked init, its setup and `sleep`)",
    "phase:total": "phases create…delete together (wall: sum; CPU: everything reaped, init included)",
    "exec": "`exec /bin/true` into a running container",
    "seccomp": "`run /bin/true` with Docker 20.10's default seccomp profile (Berth's compile cache warm, except the cold row: emptied before each run)",
}


def fmt(x: float, unit: str) -> str:
    if unit == "MiB":
        return f"{x / 1024:.1f}"
    if unit == "n":
        return f"{x:.0f}"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(m: dict, vn: str, metric: str, ref: str = "crun") -> str:
    try:
        r = m[vn][metric]["median"] / m[ref][metric]["median"]
        return f"{r:.2f}×"
    except (KeyError, ZeroDivisionError):
        return "—"


def table(m: dict, metrics: list[tuple[str, str, str]], order: list[str]) -> list[str]:
    head = ["runtime"]
    for label, _, unit in metrics:
        head += [f"{label} min ({unit})", "median", "max", "÷crun"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for vn in order + [k for k in m if k not in order]:
        if vn not in m:
            continue
        row = [vn]
        for _, metric, unit in metrics:
            if metric in m[vn]:
                s = m[vn][metric]
                row += [fmt(s["min"], unit), f"**{fmt(s['median'], unit)}**", fmt(s["max"], unit), ratio(m, vn, metric)]
            else:
                row += ["—"] * 4
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(res: dict) -> str:
    out = []
    env = res["environment"]
    out.append(
        f"Measured {env['date']} on {env['cpus']} CPUs, kernel {env['kernel']}; load average "
        f"{env['loadavg_start']} at the start, {env['loadavg_end']} at the end (which includes the 2-lane measure). "
        f"{res['args']['runs']} interleaved iterations per measure (+{res['args']['warmup']} warm-up), "
        f"batches of {res['args']['batch']} × {res['args']['batch_rounds']} rounds."
    )
    if env.get("noisy"):
        out.append(
            "\n**Noisy machine**: the load average was above half the CPU count when the run started (other work was running); wall times are inflated and "
            "spread out, CPU times less so. Re-run on a quiet machine before reading much into them."
        )
    out.append("")
    out.append("Runtimes:")
    out.append("")
    for v in res["variants"]:
        notes = [v["note"]] if v["note"] else []
        if v["run_leaves_state"]:
            notes.append("`run` leaves its state: `delete` is timed with it")
        if not v["supports_exec"]:
            notes.append("no `exec` verb yet")
        out.append(f"- **{v['name']}** — {v['version']}" + (f"; {'; '.join(notes)}" if notes else ""))
    for s in res.get("skipped", []):
        out.append(f"- skipped: {s}")
    order = [v["name"] for v in res["variants"]]
    ms = res["measures"]
    leaves = ""
    wall_cpu = [("wall", "wall_ms", "ms"), ("CPU", "cpu_ms", "ms")]
    for key in ("run", "phase:create", "phase:start", "phase:state", "phase:kill", "phase:delete",
                "phase:total", "exec", "seccomp"):
        if key not in ms:
            continue
        out += ["", f"### {MEASURE_TITLES[key].format(leaves=leaves)}", ""]
        out += table(ms[key], wall_cpu, order)
    if "phase:init" in ms:
        out += ["", f"### {MEASURE_TITLES['phase:init']}", ""]
        out += table(ms["phase:init"], [("CPU", "cpu_ms", "ms")], order)
    for key in sorted(k for k in ms if k.startswith("seq") or k.startswith("par")):
        n = res["args"]["batch"]
        title = f"{n} sequential `run`s" if key.startswith("seq") else f"{n} `run`s on 2 parallel lanes"
        out += ["", f"### {title} (per batch)", ""]
        out += table(ms[key], wall_cpu, order)
    sc = res.get("syscalls")
    if sc:
        phases = ("run", "create", "start", "state", "kill", "delete")
        out += ["", "### System calls per command (`strace -f -c`; `create` includes its init's setup and exec)", "",
                "| runtime | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
        for vn in order:
            if vn in sc:
                cells = []
                for p in phases:
                    d = sc[vn].get(p)
                    cells.append("—" if d is None else f"{d['calls']}" + (f" ({d['errors']} failed)" if d["errors"] else ""))
                out.append(f"| {vn} | " + " | ".join(cells) + " |")
        out += ["", "Most frequent system calls in `run`:", "", "| runtime | top 8 (count) |", "|---|---|"]
        for vn in order:
            if vn in sc and "run" in sc[vn]:
                top = list(sc[vn]["run"]["by_syscall"].items())[:8]
                out.append(f"| {vn} | " + ", ".join(f"{k} {n}" for k, n in top) + " |")
    if "run" in ms and any("minflt" in mm for mm in ms["run"].values()):
        out += ["", "### `run`: page faults and voluntary context switches (blocking waits), from rusage", ""]
        out += table(ms["run"], [("page faults", "minflt", "n"), ("vol. ctx switches", "nvcsw", "n")], order)
    out += ["", "### Peak RSS (ru_maxrss of the runtime process tree)", ""]
    rss = {}
    for key, label in (("run", "run"), ("phase:create", "create"), ("exec", "exec")):
        for vn, mm in ms.get(key, {}).items():
            if "maxrss_kib" in mm:
                rss.setdefault(vn, {})[label] = mm["maxrss_kib"]
    out += table(rss, [("run", "run", "MiB"), ("create", "create", "MiB"), ("exec", "exec", "MiB")], order)
    out += ["", "### Binaries", "", "| runtime | size (bytes) | ÷crun | shared libraries |", "|---|---|---|---|"]
    crun_size = res["binaries"].get("crun", {}).get("bytes")
    for rt, b in res["binaries"].items():
        r = f"{b['bytes'] / crun_size:.2f}×" if crun_size else "—"
        out.append(f"| {rt} | {b['bytes']:,} | {r} | {', '.join(b['libs'])} |")
    if res.get("hangs"):
        out += ["", "Hung commands (killed after the timeout; their samples are left out):", ""]
        for measure, per in res["hangs"].items():
            for vn, count in per.items():
                out.append(f"- {vn}: {count} in `{measure}`")
    if res.get("failures"):
        out += ["", "Failed commands (cleaned up; their samples are left out):", ""]
        for measure, per in res["failures"].items():
            for vn, count in per.items():
                out.append(f"- {vn}: {count} in `{measure}`")
        out += [f"  - {line}" for line in res.get("failure_lines", [])[:10]]
    if res.get("problems"):
        out += ["", "Problems during the run:", ""] + [f"- {p}" for p in res["problems"]]
    return "\n".join(out) + "\n"


BERTH_COLD = "berth (cold cache)"

README_BEGIN = "<!-- bench:results:begin -->"
README_END = "<!-- bench:results:end -->"


def update_readme(readme: Path, md: str) -> None:
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise BenchError(f"{readme}: markers {README_BEGIN} / {README_END} not found")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(head + README_BEGIN + "\n" + md + README_END + tail)


# ---------------------------------------------------------------------------------------------
# Output check (smoke mode / CI: the output parses and holds every expected figure)


def check_results(res: dict) -> list[str]:
    errs = []
    for k in ("environment", "variants", "measures", "binaries", "args"):
        if k not in res:
            errs.append(f"missing key {k}")
    if errs:
        return errs
    names = [v["name"] for v in res["variants"]]
    expect = ["run", "phase:create", "phase:start", "phase:state", "phase:kill", "phase:delete",
              "phase:total", f"seq{res['args']['batch']}", f"par{res['args']['batch']}x2"]
    if res["args"].get("seccomp", True):
        expect.append("seccomp")
    hangs = res.get("hangs", {})
    for m in expect:
        for vn in names:
            mm = res["measures"].get(m, {}).get(vn)
            key = "phases" if m.startswith("phase:") else m
            hung = hangs.get(key, {}).get(vn, 0) + res.get("failures", {}).get(key, {}).get(vn, 0)
            if mm is None and hung:
                continue
            if mm is None:
                errs.append(f"{m}: no figures for {vn}")
                continue
            for metric in ("wall_ms", "cpu_ms"):
                s = mm.get(metric)
                if not s or not (s["min"] <= s["median"] <= s["max"]) or s["n"] < 1:
                    errs.append(f"{m}/{vn}/{metric}: malformed {s}")
    for v in res["variants"]:
        if v["supports_exec"] and v["name"] not in res["measures"].get("exec", {}):
            errs.append(f"exec: no figures for {v['name']}")
    return errs


# ---------------------------------------------------------------------------------------------
# Main


def build_tool(name: str, work: Path) -> str:
    """Compiles bench/NAME.rs (std only) with a bare rustc, cached in bench/.tools by source
    hash: spawnd here, rtwrap (engines.py), hottrace (hotpath.py)."""
    import hashlib

    src = HERE / f"{name}.rs"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:16]
    cached = HERE / ".tools" / f"{name}-{digest}"
    if not os.access(cached, os.X_OK):
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = work / name
        subprocess.run(["rustc", "--edition", "2021", "-O", "-C", "panic=abort", "-C", "strip=symbols",
                        "-o", str(tmp), str(src)], check=True)
        shutil.move(str(tmp), cached)
    return str(cached)


def build_spawnd(work: Path) -> str:
    return build_tool("spawnd", work)


def version_of(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.strip().splitlines()[0] if out.strip() else "unknown"
    return first


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth", required=True, help="the Berth binary to measure")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=PATH",
                    help="another Berth build to compare (e.g. a branch): adds NAME and NAME-ro")
    ap.add_argument("--runc", default=shutil.which("runc"))
    ap.add_argument("--crun", default=shutil.which("crun"))
    ap.add_argument("--youki", default=None)
    ap.add_argument("--only", default="", help="comma-separated runtimes/variants: berth,berth-ro,berth-native,crun,runc,youki")
    ap.add_argument("--runs", type=int, default=30, help="interleaved iterations per measure")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations before each measure")
    ap.add_argument("--batch", type=int, default=100, help="runs per batch (sequential and 2 lanes)")
    ap.add_argument("--batch-rounds", type=int, default=3)
    ap.add_argument("--no-seccomp", dest="seccomp", action="store_false")
    ap.add_argument("--profile", action="store_true",
                    help="also count system calls per command with strace -f -c (not timed)")
    ap.add_argument("--keep-work", action="store_true", help="keep the work directory (logs, strace output)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the per-iteration run order")
    ap.add_argument("--timeout", type=float, default=20.0,
                    help="seconds after which a runtime command counts as hung and is killed")
    ap.add_argument("--json", default=str(HERE / "results/latest.json"))
    ap.add_argument("--markdown", default=str(HERE / "results/latest.md"))
    ap.add_argument("--readme", action="store_true", help="write the table into bench/README.md")
    ap.add_argument("--check", action="store_true", help="verify the JSON output holds every figure")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()

    if os.geteuid() != 0:
        print("bench: must run as root (containers, mount namespaces)", file=sys.stderr)
        return 2
    only = {s.strip() for s in a.only.split(",") if s.strip()}

    def wanted(name: str, runtime: str) -> bool:
        return not only or name in only or runtime in only

    work = Path(tempfile.mkdtemp(prefix="berth-bench.", dir="/run"))
    os.chmod(work, 0o755)
    skipped = []
    peers = {}
    for rt, path in (("crun", a.crun), ("runc", a.runc), ("youki", a.youki)):
        if not wanted(rt, rt):
            continue
        if path and os.access(path, os.X_OK):
            peers[rt] = os.path.abspath(path)
        else:
            skipped.append(f"{rt}: not installed")
    if "crun" not in peers:
        print("bench: crun is the reference; ratios will show —", file=sys.stderr)

    # Private copies of the binaries under test, all on the same filesystem.
    (work / "bin").mkdir()
    (work / "ro").mkdir()
    berth = str(work / "bin/berth")
    berth_ro = str(work / "ro/berth")
    a.berth = os.path.abspath(a.berth)
    shutil.copy2(a.berth, berth)
    shutil.copy2(a.berth, berth_ro)
    ro_binaries = [berth_ro]
    extras = []
    for spec in a.extra:
        name, _, path = spec.partition("=")
        if not re.fullmatch(r"[a-z][a-z0-9-]*", name) or not os.access(path, os.X_OK):
            print(f"bench: --extra {spec}: want NAME=PATH to an executable, NAME in [a-z0-9-]", file=sys.stderr)
            return 2
        (work / "ro" / name).mkdir()
        plain, ro = str(work / "bin" / name), str(work / "ro" / name / "berth")
        shutil.copy2(path, plain)
        shutil.copy2(path, ro)
        ro_binaries.append(ro)
        extras.append((name, os.path.abspath(path), plain, ro))
    if "crun" in peers:
        ro_binaries.append(str(work / "ro/crun"))  # last: add() below relies on it
        shutil.copy2(peers["crun"], ro_binaries[-1])
    (work / "state").mkdir()

    variants: list[Variant] = []

    def add(name: str, runtime: str, binary: str, ns: str, note: str = "") -> Variant | None:
        if not wanted(name, runtime):
            return None
        v = Variant(name, runtime, binary, ns, note=note, source=a.berth if runtime == "berth" else peers[runtime])
        v.root = str(work / "state" / f"root-{name}")
        if runtime == "berth":
            v.seccomp_cache = str(work / f"seccomp-cache-{name}")
            v.env["BERTH_SECCOMP_CACHE"] = v.seccomp_cache
        variants.append(v)
        return v

    add("berth", "berth", berth, "private",
        "plain install: no re-exec, the final exec goes through the sealed launcher")
    add("berth-ro", "berth", berth_ro, "private",
        "protected install (binary on a read-only bind mount): no launcher needed either")
    add("berth-native", "berth", berth, "hybrid", "plain install, on this machine's hybrid cgroup layout as it is")
    for name, source, plain, ro in extras:
        for n, b, note in ((name, plain, "plain install"), (f"{name}-ro", ro, "protected install")):
            v = Variant(n, "berth", b, "private", note=f"--extra {source}: {note}", source=source)
            v.root = str(work / "state" / f"root-{n}")
            v.seccomp_cache = str(work / f"seccomp-cache-{n}")
            v.env["BERTH_SECCOMP_CACHE"] = v.seccomp_cache
            variants.append(v)
    for rt in ("crun", "runc", "youki"):
        if rt in peers:
            v = add(rt, rt, peers[rt], "private")
            if rt == "crun":
                add("crun-ro", "crun", ro_binaries[-1], "private",
                    "protected install (binary on a read-only bind mount): no re-exec")
            if v and rt == "youki":
                # youki 0.7.0's foreground `run` blocks signals only after `start`: when the
                # container exits first, SIGCHLD is discarded and `run` waits forever (about
                # one run in five here). Blocked from the start, the signal stays pending.
                v.block_sigchld = True
                v.note = "started with SIGCHLD blocked: its `run` otherwise loses a fast container's exit and hangs"

    runner = Runner(work, build_spawnd(work), a.timeout, a.verbose)
    (work / "logs").mkdir()
    res: dict = {"args": vars(a) | {"seccomp": a.seccomp}, "skipped": skipped, "problems": []}
    bench = None
    rc = 0
    loadavg_start = os.getloadavg()
    try:
        set_child_subreaper()
        runc_for_spec = a.runc if a.runc and os.access(a.runc, os.X_OK) else None
        bundles = make_bundles(work, runc_for_spec, berth)
        runner.setup_namespaces(str(work / "state"), ro_binaries)
        for v in variants:
            os.makedirs(v.root, exist_ok=True)
        bench = Bench(a, runner, variants, bundles)
        bench.calibrate()
        bench.measure_run("run", "true", variants)
        bench.measure_phases()
        bench.measure_exec()
        bench.measure_batches()
        if a.profile:
            bench.profile()
        if a.seccomp:
            # Every runtime as is; Berth's compile cache is warm (filled by the warm-up runs).
            bench.measure_run("seccomp", "seccomp", variants)
            plain = next((v for v in variants if v.name == "berth"), None)
            if plain:
                cold = Variant(BERTH_COLD, "berth", plain.binary, plain.ns, root=plain.root,
                               seccomp_cache=str(work / "seccomp-cache-cold"))
                cold.env["BERTH_SECCOMP_CACHE"] = cold.seccomp_cache
                cold.run_leaves_state = plain.run_leaves_state
                bench.prepare(cold)
                bench.variants.append(cold)  # so that cleanup covers it
                bench.measure_run("seccomp", "seccomp", [cold], cold=True)
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        res["problems"].append(str(e).splitlines()[0])
        rc = 1
    finally:
        if bench:
            res["problems"] += bench.cleanup()
        runner.close()
        runner.enter("host")
        leftovers = leftover_cgroups(runner.prefix)
        for p in sorted(leftovers, key=len, reverse=True):
            res["problems"].append(f"cgroup left behind: {p}")
            try:
                os.rmdir(p)
            except OSError:
                pass
        if a.keep_work:
            print(f"[bench] work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    loadavg_end = os.getloadavg()
    res["environment"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "loadavg_start": f"{loadavg_start[0]:.1f}",
        "loadavg_end": f"{loadavg_end[0]:.1f}",
        # The load at the end includes the benchmark's own 2-lane measure: only the load it
        # found when it started says whether other work was running.
        "noisy": loadavg_start[0] > (os.cpu_count() or 1) * 0.5,
    }
    res["variants"] = [
        {"name": v.name, "runtime": v.runtime, "ns": v.ns, "note": v.note, "version": version_of(v.source),
         "run_leaves_state": v.run_leaves_state, "supports_exec": v.supports_exec}
        for v in variants
    ]
    if bench:
        res["measures"] = bench.results["measures"]
        res["hangs"] = bench.results["hangs"]
        res["failures"] = bench.results["failures"]
        res["failure_lines"] = bench.results.get("failure_lines", [])
        if "syscalls" in bench.results:
            res["syscalls"] = bench.results["syscalls"]
        if "seccomp" in res["measures"]:
            res["variants_seccomp"] = list(res["measures"]["seccomp"])
    else:
        res["measures"] = {}
    res["binaries"] = {}
    if any(v.runtime == "berth" for v in variants):
        res["binaries"]["berth"] = binary_facts(a.berth)
    for rt, p in peers.items():
        res["binaries"][rt] = binary_facts(p)
    for name, source, _, _ in extras:
        res["binaries"][name] = binary_facts(source)

    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    md = markdown(res)
    Path(a.markdown).write_text(md)
    print(md)
    print(f"[bench] JSON: {a.json}  markdown: {a.markdown}", file=sys.stderr)
    if a.readme and rc == 0:
        update_readme(HERE / "README.md", md)
    if a.check:
        parsed = json.loads(Path(a.json).read_text())
        errs = check_results(parsed)
        for e in errs:
            print(f"bench: check: {e}", file=sys.stderr)
        if errs:
            return 1
        print("[bench] check: output parses and holds every figure", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
