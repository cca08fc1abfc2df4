#!/usr/bin/env python3
"""bench/growth.py: how the cost of `run /bin/true` and `exec /bin/true` grows with the host
(issue 17 §3).

Axes (each measured on its own, everything else at its smallest point):

- mounts:     mounts in the runtimes' mount namespace (a private one the driver owns: tmpfs
              mounts under a temporary directory, gone with the driver)
- containers: sleeping containers already running on each runtime's --root (the exec target
              is one of them)
- binds:      bind mounts in config.json
- env:        extra variables in process.env
- seccomp:    no profile, Docker 20.10's default, a large synthetic one

Per axis, every runtime × level pair is measured in the same interleaved iterations (a
shuffled order per iteration; the containers axis level by level, its first level again at the
end): one `run /bin/true`, then one `exec /bin/true` into a sleeping container created with the
level's config. Timing, namespaces and launchers are bench/bench.py's (its Runner and
bench/spawnd). Medians of CPU (user + sys of the runtime and what it reaped) and wall time.

    sudo python3 bench/growth.py --berth target/x86_64-unknown-linux-gnu/release/berth
    sudo python3 bench/growth.py --smoke --berth …   # tiny sizes, 1 iteration; checks the output

Only the standard library.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench as B  # noqa: E402
import plot  # noqa: E402

DOCKER_PROFILE = Path("/work/shared/fixtures/seccomp/docker-20.10-default.json")
if not DOCKER_PROFILE.exists():
    DOCKER_PROFILE = B.REPO / "tests/fixtures/docker-20.10-default.json"

LEVELS = {
    "mounts": [50, 500, 2000],
    "containers": [1, 100, 300],
    "binds": [0, 50, 200],
    "env": [0, 100, 1000],
    "seccomp": ["none", "docker", "large"],
}
SMOKE_LEVELS = {
    "mounts": [30, 60],
    "containers": [1, 3],
    "binds": [0, 5],
    "env": [0, 10],
    "seccomp": ["none", "docker", "large"],
}
AXIS_TITLES = {
    "mounts": "mounts in the runtime's mount namespace",
    "containers": "sleeping containers on the same --root",
    "binds": "bind mounts in config.json",
    "env": "extra variables in process.env",
    "seccomp": "seccomp profile",
}
MEASURES = ("run", "exec")


def synthetic_profile(rules: int) -> dict:
    """A large profile: allow by default, and `rules` argument-conditional ERRNO rules spread
    over syscalls that neither the runtimes' last steps nor /bin/true make (keyrings, NUMA
    policy, kexec…): every rule is compiled into the filter, none fires."""
    names = ["add_key", "keyctl", "request_key", "mbind", "set_mempolicy", "get_mempolicy",
             "move_pages", "migrate_pages", "kexec_load", "kcmp", "lookup_dcookie", "perf_event_open",
             "fanotify_init", "name_to_handle_at", "open_by_handle_at", "process_vm_readv",
             "process_vm_writev", "quotactl", "syslog", "userfaultfd"]
    syscalls = []
    for k in range(rules):
        syscalls.append({"names": [names[k % len(names)]], "action": "SCMP_ACT_ERRNO",
                         "args": [{"index": k % 3, "value": 1000 + k, "op": "SCMP_CMP_EQ"}]})
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": syscalls}


class Growth:
    def __init__(self, a, runner: B.Runner, variants: list[B.Variant], work: Path, base: dict, rootfs: Path):
        self.a = a
        self.r = runner
        self.variants = variants
        self.work = work
        self.base = base
        self.rootfs = rootfs
        self.results: dict = {}
        self.failures: list[str] = []
        self.nbundle = 0

    def progress(self, msg: str) -> None:
        print(f"[growth] {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)

    # --- bundles --------------------------------------------------------------------------

    def bundle(self, args: list[str], binds: int = 0, env: int = 0, seccomp: str = "none") -> str:
        cfg = json.loads(json.dumps(self.base))
        cfg["root"]["path"] = str(self.rootfs)
        cfg["process"]["args"] = args
        src = self.work / "bindsrc"
        for i in range(binds):
            cfg["mounts"].append({"destination": f"/mnt/b{i}", "type": "bind", "source": str(src),
                                  "options": ["rbind", "rprivate"]})
        cfg["process"]["env"] += [f"GROWTH_VAR_{i}=value-{i}-{'x' * 24}" for i in range(env)]
        if seccomp == "docker":
            cfg["linux"]["seccomp"] = json.loads(DOCKER_PROFILE.read_text())
        elif seccomp == "large":
            cfg["linux"]["seccomp"] = synthetic_profile(self.a.large_rules)
        self.nbundle += 1
        d = self.work / f"bundle-{self.nbundle}"
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg, indent=1))
        return str(d)

    # --- containers ------------------------------------------------------------------------

    def start_sleepers(self, v: B.Variant, bundle: str, n: int) -> list[str]:
        ids = []
        for _ in range(n):
            cid = self.r.new_id(v)
            self.r.track(v, cid)
            self.r.timed(v, ["run", "--detach", "--bundle", bundle, cid])
            ids.append(cid)
        return ids

    def stop(self, v: B.Variant, ids: list[str]) -> None:
        for cid in ids:
            self.r.status(v, ["delete", "--force", cid])
            self.r.untrack(v, cid)
        self.r.reap_strays()

    # --- points -------------------------------------------------------------------------------

    def combo(self, v: B.Variant, k: int, ns: str) -> B.Variant:
        """Runtime v at point k: its own launcher (in namespace ns), the runtime's --root."""
        c = B.Variant(f"{v.name}@{k}", v.runtime, v.binary, ns, root=v.root, env=dict(v.env),
                      seccomp_cache=v.seccomp_cache, block_sigchld=v.block_sigchld)
        c.base = v.name
        return c

    def measure(self, axis: str, points: list[tuple], sleepers: int = 1) -> list[dict]:
        """Measures every runtime at every point given, in the same interleaved iterations (a
        shuffled order of all runtime × point pairs per iteration): `sleepers` sleeping
        containers per pair (the first is the exec target), then per iteration one `run` and one
        `exec` for each pair. A point is (level, run_bundle, sleep_bundle, namespace)."""
        for attempt in range(2):
            load0 = os.getloadavg()[0]
            combos = [(k, self.combo(v, k, ns)) for k, (_, _, _, ns) in enumerate(points) for v in self.variants]
            cs = [c for _, c in combos]
            targets: dict[str, list[str]] = {}
            data = {c.name: {m: {"wall_ms": [], "cpu_ms": []} for m in MEASURES} for c in cs}
            fails = {c.name: 0 for c in cs}
            try:
                for k, c in combos:
                    targets[c.name] = self.start_sleepers(c, points[k][2], sleepers)
                for i in range(-self.a.warmup, self.a.runs):
                    for m in MEASURES:
                        for k, c in B.shuffled(combos, i * 2 + (m == "exec"), self.a.seed):
                            before = set(self.r.live.get(c.name, ()))
                            try:
                                if m == "run":
                                    cid = self.r.new_id(c)
                                    self.r.track(c, cid)
                                    s = self.r.timed(c, ["run", "--bundle", points[k][1], cid])
                                    self.r.untrack(c, cid)
                                else:
                                    s = self.r.timed(c, ["exec", targets[c.name][0], "/bin/true"])
                            except B.BenchError as e:
                                fails[c.name] += 1
                                self.failures.append(f"{axis}={points[k][0]} {m} {c.base}: {str(e).splitlines()[0]}")
                                print(f"[growth] {e}", file=sys.stderr)
                                self.r.forget_new(c, before)
                                continue
                            if i >= 0:
                                data[c.name][m]["wall_ms"].append(s.wall_ms)
                                data[c.name][m]["cpu_ms"].append(s.cpu_ms)
                    self.r.reap_strays()
                    self.r.scrub()
            finally:
                for c in cs:
                    self.stop(c, targets.get(c.name, []))
                self.r.scrub()
                for c in cs:  # its launcher: not needed any more
                    p = self.r.spawnd.pop(c.name, None)
                    if p:
                        p.stdin.close()
                        p.wait()
            load1 = os.getloadavg()[0]
            if load1 > self.a.load_limit and attempt == 0 and not self.a.smoke:
                self.progress(f"{axis}: load {load1:.1f} above {self.a.load_limit}; measuring again")
                time.sleep(20)
                continue
            break
        out = []
        for k, (level, _, _, _) in enumerate(points):
            p = {"level": level, "loadavg": [round(load0, 2), round(load1, 2)], "repeated": attempt > 0,
                 "failures": {}, "measures": {}}
            for kk, c in combos:
                if kk != k:
                    continue
                p["failures"][c.base] = fails[c.name]
                for m in MEASURES:
                    d = data[c.name][m]
                    if d["cpu_ms"]:
                        p["measures"].setdefault(m, {})[c.base] = {
                            key: {**B.summary(vals), "samples": [round(x, 3) for x in vals]} for key, vals in d.items()}
            out.append(p)
        return out

    def mount_ns(self, total: int) -> tuple[str, int]:
        """A mount namespace of the driver's, a copy of "private" holding `total` mounts (tmpfs
        mounts added under one tmpfs of its own); its name and the count it holds."""
        self.r.enter("private")
        B.sys_unshare(B.CLONE_NEWNS)
        have = len(Path("/proc/self/mountinfo").read_text().splitlines())
        extra = total - have - 1
        if extra >= 0:
            hm = self.work / "hostmounts"
            hm.mkdir(exist_ok=True)
            B.sys_mount("tmpfs", str(hm), "tmpfs", B.MS_NOSUID | B.MS_NODEV, "size=1m,mode=755")
            for i in range(extra):
                d = hm / f"m{i}"
                d.mkdir()
                B.sys_mount("tmpfs", str(d), "tmpfs", B.MS_NOSUID | B.MS_NODEV, "size=64k")
        count = len(Path("/proc/self/mountinfo").read_text().splitlines())
        name = f"mounts{total}"
        self.r.ns_fd[name] = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self.r.current_ns = name
        self.r.enter("private")
        return name, count

    def drop_mount_namespaces(self) -> None:
        self.r.enter("private")
        for name in [n for n in self.r.ns_fd if n.startswith("mounts")]:
            os.close(self.r.ns_fd.pop(name))  # the namespace goes with its last user

    # --- the axes -------------------------------------------------------------------------------

    def axis(self, axis: str, levels: list) -> None:
        self.progress(f"axis {axis}: {levels}")
        plain_run = self.bundle(["/bin/true"])
        plain_sleep = self.bundle(["/bin/sleep", "3600"])
        if axis == "mounts":
            points, notes = [], []
            for lv in levels:
                ns, have = self.mount_ns(lv)
                points.append((lv, plain_run, plain_sleep, ns))
                notes.append(f"{have} mounts in the namespace")
            pts = self.measure(axis, points)
            self.drop_mount_namespaces()
            for p, n in zip(pts, notes):
                p["note"] = n
        elif axis == "containers":
            # Sequential (one --root per runtime): the first level is measured again at the end,
            # which shows how far the machine drifted meanwhile.
            pts = []
            for lv in [*levels, levels[0]]:
                p = self.measure(axis, [(lv, plain_run, plain_sleep, "private")], sleepers=lv)[0]
                pts.append(p)
                self.progress(f"  {axis}={lv}: " + ", ".join(
                    f"{vn} run {mm['cpu_ms']['median']:.1f}" for vn, mm in p["measures"].get("run", {}).items())
                    + f" ms CPU; load {p['loadavg'][1]:.1f}")
            pts[-1]["level"] = f"{levels[0]} (again)"
        else:
            kw = {"binds": "binds", "env": "env", "seccomp": "seccomp"}[axis]
            points = [(lv, self.bundle(["/bin/true"], **{kw: lv}), self.bundle(["/bin/sleep", "3600"], **{kw: lv}), "private")
                      for lv in levels]
            pts = self.measure(axis, points)
        for p in pts if axis != "containers" else ():
            self.progress(f"  {axis}={p['level']}: " + ", ".join(
                f"{vn} run {mm['cpu_ms']['median']:.1f}" for vn, mm in p["measures"].get("run", {}).items())
                + f" ms CPU; load {p['loadavg'][1]:.1f}")
        self.results[axis] = pts


# ---------------------------------------------------------------------------------------------
# Report


def med(p: dict, m: str, vn: str, k: str):
    try:
        return p["measures"][m][vn][k]["median"]
    except KeyError:
        return None


def markdown(res: dict) -> str:
    env = res["environment"]
    names = [v["name"] for v in res["variants"]]
    out = [f"Measured {env['date']} on {env['cpus']} CPUs, kernel {env['kernel']}, "
           f"{res['args']['runs']} interleaved iterations per point (+{res['args']['warmup']} warm-up); "
           "load average (1 min) at the start and end of each point in the last column. "
           "Cells: median in ms, and (×) its ratio to the same runtime's smallest point.", ""]
    out += ["Runtimes: " + "; ".join(f"**{v['name']}** {v['version']}" for v in res["variants"])]
    for axis, pts in res["axes"].items():
        out += ["", f"#### {AXIS_TITLES[axis]}", ""]
        head = [axis, "measure"] + [f"{n} {k}" for n in names for k in ("CPU", "wall")] + ["load"]
        out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m in MEASURES:
            for p in pts:
                row = [f"{p['level']}", f"`{m}`"]
                for n in names:
                    for k in ("cpu_ms", "wall_ms"):
                        v, v0 = med(p, m, n, k), med(pts[0], m, n, k)
                        if v is None:
                            row.append("—")
                        else:
                            g = f" ({v / v0:.2f}×)" if v0 else ""
                            row.append(f"{v:.1f}{g}")
                row.append(f"{p['loadavg'][0]:.1f}→{p['loadavg'][1]:.1f}" + (" (again)" if p.get("repeated") else ""))
                out.append("| " + " | ".join(row) + " |")
    if res.get("failures"):
        out += ["", "Failed commands (left out):", ""] + [f"- {f}" for f in res["failures"][:20]]
    return "\n".join(out) + "\n"


def plots(res: dict, outdir: Path, prefix: str) -> list[str]:
    """One SVG per axis: per measure, the CPU time (ms) and its growth (× the same runtime's
    smallest point, with the issue's 1.2× line)."""
    files = []
    names = [v["name"] for v in res["variants"]]
    for axis, pts in res["axes"].items():
        panels = []
        xs = [str(p["level"]) for p in pts]
        for m in MEASURES:
            panels.append({"title": f"{m}: CPU (ms, median)", "x": xs, "xlabel": AXIS_TITLES[axis],
                           "series": {n: [med(p, m, n, "cpu_ms") for p in pts] for n in names}})
            growth = {}
            for n in names:
                v0 = med(pts[0], m, n, "cpu_ms")
                growth[n] = [None if med(p, m, n, "cpu_ms") is None or not v0 else med(p, m, n, "cpu_ms") / v0
                             for p in pts]
            panels.append({"title": f"{m}: CPU growth (× own smallest point)", "x": xs, "xlabel": AXIS_TITLES[axis],
                           "series": growth, "hline": 1.2, "hline_label": "1.2×"})
        f = outdir / f"{prefix}{axis}.svg"
        plot.line_chart(f, f"Cost per call vs {AXIS_TITLES[axis]}", panels,
                        note=f"{res['environment']['date']}, {res['args']['runs']} interleaved iterations per point")
        files.append(str(f))
    return files


def check(res: dict) -> list[str]:
    errs = []
    names = [v["name"] for v in res["variants"]]
    for axis in res["args"]["axes"]:
        pts = res["axes"].get(axis)
        if not pts:
            errs.append(f"{axis}: no points")
            continue
        for p in pts:
            for m in MEASURES:
                for n in names:
                    mm = p["measures"].get(m, {}).get(n)
                    if mm is None:
                        if not p["failures"].get(n):
                            errs.append(f"{axis}={p['level']} {m} {n}: no figures")
                        continue
                    for k in ("cpu_ms", "wall_ms"):
                        s = mm[k]
                        if not (s["n"] >= 1 and s["min"] <= s["median"] <= s["max"]):
                            errs.append(f"{axis}={p['level']} {m} {n} {k}: malformed")
    return errs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--berth")
    ap.add_argument("--replot", metavar="JSON", help="only rewrite the markdown and SVG files from a results file")
    ap.add_argument("--runc", default=shutil.which("runc"))
    ap.add_argument("--crun", default=shutil.which("crun"))
    ap.add_argument("--youki", default=None)
    ap.add_argument("--axes", default="env,binds,seccomp,mounts,containers")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("--large-rules", type=int, default=600, help="rules in the synthetic seccomp profile")
    ap.add_argument("--load-limit", type=float, default=3.0,
                    help="a point whose 1-min load average ends above this is measured once more")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, 1 iteration, checks the output")
    ap.add_argument("--json", default=str(HERE / "results/growth.json"))
    ap.add_argument("--markdown", default=str(HERE / "results/growth.md"))
    ap.add_argument("--svg-dir", default=str(HERE / "results"))
    ap.add_argument("--svg-prefix", default="growth-")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    if a.replot:
        res = json.loads(Path(a.replot).read_text())
        Path(a.markdown).write_text(markdown(res))
        print("\n".join(plots(res, Path(a.svg_dir), a.svg_prefix)))
        return 0
    if not a.berth:
        ap.error("--berth is required")
    if os.geteuid() != 0:
        print("growth: must run as root", file=sys.stderr)
        return 2
    a.axes = [x for x in a.axes.split(",") if x]
    levels = SMOKE_LEVELS if a.smoke else LEVELS
    smoke_out = None
    if a.smoke:
        a.runs, a.warmup, a.large_rules = 1, 0, 40
        if a.json == ap.get_default("json"):  # CI: results go to a temporary directory
            smoke_out = Path(tempfile.mkdtemp(prefix="berth-growth-smoke."))
            a.json, a.markdown, a.svg_dir = (str(smoke_out / "growth.json"), str(smoke_out / "growth.md"),
                                             str(smoke_out))

    work = Path(tempfile.mkdtemp(prefix="berth-growth.", dir="/run"))
    os.chmod(work, 0o755)
    (work / "bin").mkdir()
    (work / "state").mkdir()
    (work / "logs").mkdir()
    (work / "bindsrc").mkdir()
    berth = str(work / "bin/berth")
    shutil.copy2(a.berth, berth)
    variants = []
    skipped = []
    for name, path in (("berth", berth), ("crun", a.crun), ("runc", a.runc), ("youki", a.youki)):
        if not path or not os.access(path, os.X_OK):
            if name != "youki" or a.youki:
                skipped.append(name)
            continue
        v = B.Variant(name, name, os.path.abspath(path), "private",
                      source=os.path.abspath(a.berth if name == "berth" else path))
        v.root = str(work / "state" / f"root-{name}")
        if name == "berth":
            v.seccomp_cache = str(work / "seccomp-cache")
            os.makedirs(v.seccomp_cache)
            v.env["BERTH_SECCOMP_CACHE"] = v.seccomp_cache
        if name == "youki":
            v.block_sigchld = True
        variants.append(v)
    runner = B.Runner(work, B.build_spawnd(work), a.timeout, a.verbose)
    res = {"args": vars(a), "skipped": skipped, "problems": []}
    g = None
    rc = 0
    load_start = os.getloadavg()[0]
    try:
        B.set_child_subreaper()
        rootfs = work / "rootfs"
        B.make_rootfs(rootfs)
        for i in range(max(levels["binds"])):
            (rootfs / "mnt" / f"b{i}").mkdir(parents=True)
        runc = a.runc if a.runc and os.access(a.runc, os.X_OK) else None
        base = B.base_config(runc, berth, work)
        runner.setup_namespaces(str(work / "state"), [])
        for v in variants:
            os.makedirs(v.root)
        g = Growth(a, runner, variants, work, base, rootfs)
        for axis in a.axes:
            g.axis(axis, levels[axis])
    except B.BenchError as e:
        print(f"growth: {e}", file=sys.stderr)
        res["problems"].append(str(e).splitlines()[0])
        rc = 1
    finally:
        if g:
            g.drop_mount_namespaces()
            for v in variants:
                for cid in list(runner.live.get(v.name, ())):
                    res["problems"].append(f"{v.name}: {cid} left; force-deleting")
                    runner.force_delete(v, cid)
            for v in variants:
                if os.path.isdir(v.root) and os.listdir(v.root):
                    res["problems"].append(f"{v.name}: state left in its root: {os.listdir(v.root)}")
        runner.close()
        runner.enter("host")
        for p in sorted(B.leftover_cgroups(runner.prefix), key=len, reverse=True):
            res["problems"].append(f"cgroup left behind: {p}")
            try:
                os.rmdir(p)
            except OSError:
                pass
        shutil.rmtree(work, ignore_errors=True)
    res["environment"] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "kernel": platform.release(),
                          "cpus": os.cpu_count(), "loadavg_start": round(load_start, 2),
                          "loadavg_end": round(os.getloadavg()[0], 2)}
    res["variants"] = [{"name": v.name, "version": B.version_of(v.source)} for v in variants]
    res["axes"] = g.results if g else {}
    res["failures"] = g.failures if g else []
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=1))
    md = markdown(res)
    Path(a.markdown).write_text(md)
    print(md)
    Path(a.svg_dir).mkdir(parents=True, exist_ok=True)
    svgs = plots(res, Path(a.svg_dir), a.svg_prefix)
    for p in res["problems"]:
        print(f"growth: problem: {p}", file=sys.stderr)
    if a.smoke:
        parsed = json.loads(Path(a.json).read_text())
        errs = check(parsed)
        for f in svgs:
            try:
                plot.check(f)
            except Exception as e:  # noqa: BLE001
                errs.append(str(e))
        for e in errs:
            print(f"growth: check: {e}", file=sys.stderr)
        if smoke_out:
            shutil.rmtree(smoke_out, ignore_errors=True)
        if errs or res["problems"]:
            return 1
        print("[growth] check: output parses and holds every figure", file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
