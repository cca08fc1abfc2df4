//! Drives containerd's CRI plugin over its unix socket the way kubelet does, for a pod whose
//! runtime handler (what a RuntimeClass names) runs the runtime under test. Prints one
//! `PASS cri: …` / `FAIL cri: …` line per check (details indented below a failure) and
//! `TIME cri: …` lines; exits 1 if any check failed. Every pod it creates is removed before it
//! exits, pass or fail.
//!
//! Usage: berth-cri-check --socket PATH --handler NAME --image REF --log-dir DIR
//!        [--cgroup-parent PATH] [--timing-runs N] [--runtime-name NAME]
//!        [--compare-handler NAME --compare-name NAME]
//!
//! With a compare handler, the timed pods alternate between the two handlers, run for run.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::security_profile::ProfileType;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

type Rt = RuntimeServiceClient<Channel>;

struct Opts {
    socket: String,
    handler: String,
    image: String,
    log_dir: String,
    cgroup_parent: String,
    timing_runs: usize,
    runtime_name: String,
    compare_handler: Option<String>,
    compare_name: String,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        socket: String::new(),
        handler: "berth".into(),
        image: String::new(),
        log_dir: String::new(),
        cgroup_parent: "/berth-it-cri".into(),
        timing_runs: 5,
        runtime_name: "berth".into(),
        compare_handler: None,
        compare_name: "runc".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a}: a value is expected"));
        match a.as_str() {
            "--socket" => o.socket = val()?,
            "--handler" => o.handler = val()?,
            "--image" => o.image = val()?,
            "--log-dir" => o.log_dir = val()?,
            "--cgroup-parent" => o.cgroup_parent = val()?,
            "--runtime-name" => o.runtime_name = val()?,
            "--compare-handler" => o.compare_handler = Some(val()?),
            "--compare-name" => o.compare_name = val()?,
            "--timing-runs" => {
                o.timing_runs = val()?.parse().map_err(|e| format!("--timing-runs: {e}"))?
            }
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    for (name, v) in [
        ("--socket", &o.socket),
        ("--image", &o.image),
        ("--log-dir", &o.log_dir),
    ] {
        if v.is_empty() {
            return Err(format!("{name} is required"));
        }
    }
    Ok(o)
}

/// Counts and prints check results in the suite's format.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
}

impl Report {
    fn pass(&mut self, name: &str) {
        self.passed += 1;
        println!("PASS cri: {name}");
    }

    fn fail(&mut self, name: &str, detail: &str) {
        self.failed += 1;
        println!("FAIL cri: {name}");
        for line in detail.lines() {
            println!("    | {line}");
        }
    }

    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            self.pass(name)
        } else {
            self.fail(name, &detail())
        }
    }

    /// Passes on Ok, fails with the error on Err; returns the value if any.
    fn step<T>(&mut self, name: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => {
                self.pass(name);
                Some(v)
            }
            Err(e) => {
                self.fail(name, &e);
                None
            }
        }
    }
}

fn status_err(s: tonic::Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

async fn connect(path: &str) -> Result<Channel, String> {
    let path = path.to_string();
    Endpoint::try_from("http://[::]:0")
        .map_err(|e| e.to_string())?
        // No call may hang the suite: the longest expected (StopContainer) takes its own 20 s.
        .timeout(Duration::from_secs(45))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// The kubelet's defaults for masked and read-only paths (it sends them; containerd adds none).
fn kubelet_security(pid: NamespaceMode, seccomp: bool) -> LinuxContainerSecurityContext {
    LinuxContainerSecurityContext {
        namespace_options: Some(NamespaceOption {
            network: NamespaceMode::Node as i32,
            pid: pid as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        masked_paths: [
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
        ]
        .map(String::from)
        .to_vec(),
        readonly_paths: [
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]
        .map(String::from)
        .to_vec(),
        seccomp: seccomp.then(|| SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    }
}

struct Suite {
    o: Opts,
    rt: Rt,
    pods: Vec<String>,
}

impl Suite {
    fn sandbox_config(&self, name: &str) -> PodSandboxConfig {
        let uid = format!("berth-it-{name}-{}", std::process::id());
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: "berth-it".into(),
                attempt: 0,
            }),
            // A host-network pod shares the node's UTS namespace: no hostname of its own.
            hostname: String::new(),
            log_directory: format!("{}/{uid}", self.o.log_dir),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: self.o.cgroup_parent.clone(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        pid: NamespaceMode::Pod as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    async fn run_pod(&mut self, cfg: &PodSandboxConfig) -> Result<String, String> {
        let handler = self.o.handler.clone();
        self.run_pod_with(cfg, handler).await
    }

    async fn run_pod_with(
        &mut self,
        cfg: &PodSandboxConfig,
        handler: String,
    ) -> Result<String, String> {
        let r = self
            .rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(cfg.clone()),
                runtime_handler: handler,
            })
            .await
            .map_err(status_err)?
            .into_inner();
        self.pods.push(r.pod_sandbox_id.clone());
        Ok(r.pod_sandbox_id)
    }

    async fn create(
        &mut self,
        pod: &str,
        sandbox: &PodSandboxConfig,
        name: &str,
        command: &[&str],
        linux: LinuxContainerConfig,
    ) -> Result<String, String> {
        let cfg = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(ImageSpec {
                image: self.o.image.clone(),
                ..Default::default()
            }),
            command: command.iter().map(|s| s.to_string()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(linux),
            ..Default::default()
        };
        Ok(self
            .rt
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.into(),
                config: Some(cfg),
                sandbox_config: Some(sandbox.clone()),
            })
            .await
            .map_err(status_err)?
            .into_inner()
            .container_id)
    }

    async fn start(&mut self, id: &str) -> Result<(), String> {
        self.rt
            .start_container(StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn status(
        &mut self,
        id: &str,
    ) -> Result<(ContainerStatus, HashMap<String, String>), String> {
        let r = self
            .rt
            .container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: true,
            })
            .await
            .map_err(status_err)?
            .into_inner();
        Ok((r.status.ok_or("no status in the answer")?, r.info))
    }

    /// The container's host pid, from the verbose status.
    async fn pid(&mut self, id: &str) -> Result<i64, String> {
        let (_, info) = self.status(id).await?;
        let v: serde_json::Value = serde_json::from_str(info.get("info").ok_or("no verbose info")?)
            .map_err(|e| e.to_string())?;
        v["pid"]
            .as_i64()
            .ok_or_else(|| "no pid in the verbose info".into())
    }

    async fn exec(&mut self, id: &str, cmd: &[&str]) -> Result<ExecSyncResponse, String> {
        Ok(self
            .rt
            .exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: cmd.iter().map(|s| s.to_string()).collect(),
                timeout: 20,
            })
            .await
            .map_err(status_err)?
            .into_inner())
    }

    async fn stop(&mut self, id: &str, timeout: i64) -> Result<(), String> {
        self.rt
            .stop_container(StopContainerRequest {
                container_id: id.into(),
                timeout,
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn remove(&mut self, id: &str) -> Result<(), String> {
        self.rt
            .remove_container(RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn stop_pod(&mut self, id: &str) -> Result<(), String> {
        self.rt
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status_err)?;
        Ok(())
    }

    async fn remove_pod(&mut self, id: &str) -> Result<(), String> {
        self.rt
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(status_err)?;
        self.pods.retain(|p| p != id);
        Ok(())
    }

    async fn pod_state(&mut self, id: &str) -> Result<i32, String> {
        let r = self
            .rt
            .pod_sandbox_status(PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(status_err)?
            .into_inner();
        Ok(r.status.ok_or("no status in the answer")?.state)
    }

    /// Waits (polling every 10 ms, up to `limit`) until the container has exited.
    async fn wait_exited(&mut self, id: &str, limit: Duration) -> Result<ContainerStatus, String> {
        let t0 = Instant::now();
        loop {
            let (s, _) = self.status(id).await?;
            if s.state == ContainerState::ContainerExited as i32 {
                return Ok(s);
            }
            if t0.elapsed() > limit {
                return Err(format!("still in state {} after {limit:?}", s.state));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops and removes every pod this run created (and so their containers).
    async fn remove_all(&mut self, rep: &mut Report) {
        for id in self.pods.clone() {
            let r = match self.stop_pod(&id).await {
                Ok(()) => self.remove_pod(&id).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                rep.fail(&format!("clean-up: remove pod {id}"), &e);
            }
        }
    }
}

fn cgroup_file(pid: i64, controller: &str, file: &str) -> Result<String, String> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).map_err(|e| e.to_string())?;
    for line in cg.lines() {
        let mut f = line.splitn(3, ':');
        let (_, ctl, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
        if ctl.split(',').any(|c| c == controller) {
            let p = format!("/sys/fs/cgroup/{controller}{path}/{file}");
            return std::fs::read_to_string(&p)
                .map(|s| s.trim().to_string())
                .map_err(|e| format!("{p}: {e}"));
        }
    }
    Err(format!("pid {pid} has no {controller} cgroup"))
}

const SIGTERM: u32 = 15;

/// True when `pid` has a handler for signal `sig` (bit sig-1 of SigCgt in /proc/PID/status).
fn handles(pid: i64, sig: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| mask >> (sig - 1) & 1 == 1)
}

/// Polls `cond` every 10 ms until it holds or `limit` passes; the check that follows says which.
async fn until_true(limit: Duration, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() && t0.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn exec_out(r: &ExecSyncResponse) -> String {
    format!(
        "exit code {}, stdout {:?}, stderr {:?}",
        r.exit_code,
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    )
}

async fn checks(s: &mut Suite, rep: &mut Report) {
    // The runtime and the image.
    match s
        .rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
    {
        Ok(v) => {
            let v = v.into_inner();
            rep.check("Version (CRI v1)", v.runtime_api_version == "v1", || {
                format!("{v:?}")
            })
        }
        Err(e) => rep.fail("Version (CRI v1)", &status_err(e)),
    }

    // A pod with a long-running container: the calls kubelet makes over its life.
    let sandbox = s.sandbox_config("pod1");
    let Some(pod) = rep.step(
        "RunPodSandbox (runtime handler, host network)",
        s.run_pod(&sandbox).await,
    ) else {
        return;
    };
    let st = s.pod_state(&pod).await;
    rep.check(
        "PodSandboxStatus: ready",
        st == Ok(PodSandboxState::SandboxReady as i32),
        || format!("{st:?}"),
    );

    let linux = LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: 64 << 20,
            cpu_period: 100_000,
            cpu_quota: 50_000,
            cpu_shares: 512,
            ..Default::default()
        }),
        security_context: Some(kubelet_security(NamespaceMode::Container, true)),
    };
    let cmd = [
        "sh",
        "-c",
        "trap 'exit 0' TERM; echo started; sleep 600 & wait",
    ];
    let Some(c1) = rep.step(
        "CreateContainer",
        s.create(&pod, &sandbox, "c1", &cmd, linux).await,
    ) else {
        return;
    };
    rep.step("StartContainer", s.start(&c1).await);
    let st = s.status(&c1).await.map(|(st, _)| st.state);
    rep.check(
        "ContainerStatus: running",
        st == Ok(ContainerState::ContainerRunning as i32),
        || format!("{st:?}"),
    );

    match s
        .exec(
            &c1,
            &["sh", "-c", "echo exec output; echo to stderr >&2; exit 3"],
        )
        .await
    {
        Ok(r) => rep.check(
            "ExecSync: stdout, stderr and exit code",
            r.exit_code == 3 && r.stdout == b"exec output\n" && r.stderr == b"to stderr\n",
            || exec_out(&r),
        ),
        Err(e) => rep.fail("ExecSync: stdout, stderr and exit code", &e),
    }
    match s
        .exec(
            &c1,
            &[
                "sh",
                "-c",
                "grep ^Seccomp: /proc/self/status; cat /proc/1/cmdline | tr '\\0' ' '",
            ],
        )
        .await
    {
        Ok(r) => {
            let out = String::from_utf8_lossy(&r.stdout);
            rep.check(
                "ExecSync: own pid namespace, RuntimeDefault seccomp",
                r.exit_code == 0 && out.contains("\t2\n") && out.contains("sh -c trap"),
                || exec_out(&r),
            )
        }
        Err(e) => rep.fail("ExecSync: own pid namespace, RuntimeDefault seccomp", &e),
    }
    match s.pid(&c1).await {
        Ok(pid) => {
            let mem = cgroup_file(pid, "memory", "memory.limit_in_bytes");
            let quota = cgroup_file(pid, "cpu", "cpu.cfs_quota_us");
            rep.check(
                "resources in the container's cgroup",
                mem.as_deref() == Ok("67108864") && quota.as_deref() == Ok("50000"),
                || format!("memory.limit_in_bytes {mem:?}, cpu.cfs_quota_us {quota:?}"),
            );
            // Its shell may not have run `trap` yet; pid 1 ignores SIGTERM until it has.
            until_true(Duration::from_secs(10), || handles(pid, SIGTERM)).await;
        }
        Err(e) => rep.fail("resources in the container's cgroup", &e),
    }

    // StopContainer: SIGTERM, which the container handles.
    let t0 = Instant::now();
    rep.step("StopContainer (SIGTERM handled)", s.stop(&c1, 20).await);
    match s.status(&c1).await {
        Ok((st, _)) => rep.check(
            "ContainerStatus: exited 0, promptly",
            st.state == ContainerState::ContainerExited as i32
                && st.exit_code == 0
                && t0.elapsed() < Duration::from_secs(10),
            || {
                format!(
                    "state {} exit code {} reason {:?} after {:?}",
                    st.state,
                    st.exit_code,
                    st.reason,
                    t0.elapsed()
                )
            },
        ),
        Err(e) => rep.fail("ContainerStatus: exited 0, promptly", &e),
    }
    // containerd copies the output to the log asynchronously.
    let log_path = format!("{}/c1.log", sandbox.log_directory);
    let has_output = |l: &str| l.contains(" stdout F started");
    until_true(Duration::from_secs(5), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| has_output(&l))
    })
    .await;
    let log = std::fs::read_to_string(&log_path);
    rep.check(
        "container log holds its output",
        log.as_ref().is_ok_and(|l| has_output(l)),
        || format!("{log:?}"),
    );
    rep.step("RemoveContainer", s.remove(&c1).await);

    // A container that ignores SIGTERM: StopContainer kills it after the timeout.
    let linux = LinuxContainerConfig {
        resources: None,
        security_context: Some(kubelet_security(NamespaceMode::Container, false)),
    };
    if let Some(c2) = rep.step(
        "CreateContainer (ignores SIGTERM)",
        s.create(&pod, &sandbox, "c2", &["sleep", "600"], linux)
            .await,
    ) {
        rep.step("StartContainer (ignores SIGTERM)", s.start(&c2).await);
        let t0 = Instant::now();
        rep.step(
            "StopContainer (SIGKILL after the timeout)",
            s.stop(&c2, 2).await,
        );
        match s.status(&c2).await {
            Ok((st, _)) => rep.check(
                "ContainerStatus: exited 137 after the timeout",
                st.state == ContainerState::ContainerExited as i32
                    && st.exit_code == 137
                    && t0.elapsed() >= Duration::from_secs(2),
                || {
                    format!(
                        "state {} exit code {} after {:?}",
                        st.state,
                        st.exit_code,
                        t0.elapsed()
                    )
                },
            ),
            Err(e) => rep.fail("ContainerStatus: exited 137 after the timeout", &e),
        }
        rep.step("RemoveContainer (ignores SIGTERM)", s.remove(&c2).await);
    }

    rep.step("StopPodSandbox", s.stop_pod(&pod).await);
    let st = s.pod_state(&pod).await;
    rep.check(
        "PodSandboxStatus: not ready",
        st == Ok(PodSandboxState::SandboxNotready as i32),
        || format!("{st:?}"),
    );
    rep.step("RemovePodSandbox", s.remove_pod(&pod).await);
    let left =
        s.rt.list_pod_sandbox(ListPodSandboxRequest { filter: None })
            .await
            .map(|r| {
                r.into_inner()
                    .items
                    .into_iter()
                    .map(|p| p.id)
                    .collect::<Vec<_>>()
            });
    rep.check(
        "ListPodSandbox: the pod is gone",
        left.as_ref().is_ok_and(|l| !l.contains(&pod)),
        || format!("{left:?}"),
    );
}

/// One pod whose container runs `echo hi` to completion, from RunPodSandbox to
/// RemovePodSandbox: what `run --rm … echo hi` is for the other engines.
async fn echo_pod(s: &mut Suite, n: usize, handler: String) -> Result<Duration, String> {
    let t0 = Instant::now();
    let sandbox = s.sandbox_config(&format!("time{n}-{handler}"));
    let pod = s.run_pod_with(&sandbox, handler).await?;
    let linux = LinuxContainerConfig {
        resources: None,
        security_context: Some(kubelet_security(NamespaceMode::Container, false)),
    };
    let c = s
        .create(&pod, &sandbox, "echo", &["echo", "hi"], linux)
        .await?;
    s.start(&c).await?;
    let st = s.wait_exited(&c, Duration::from_secs(20)).await?;
    s.remove(&c).await?;
    s.stop_pod(&pod).await?;
    s.remove_pod(&pod).await?;
    let took = t0.elapsed();
    let log =
        std::fs::read_to_string(format!("{}/echo.log", sandbox.log_directory)).unwrap_or_default();
    if st.exit_code != 0 || !log.contains(" stdout F hi") {
        return Err(format!("exit code {}, log {log:?}", st.exit_code));
    }
    Ok(took)
}

async fn timing(s: &mut Suite, rep: &mut Report) {
    if s.o.timing_runs == 0 {
        return;
    }
    let mut runtimes = vec![(s.o.handler.clone(), s.o.runtime_name.clone(), Vec::new())];
    if let Some(h) = &s.o.compare_handler {
        runtimes.push((h.clone(), s.o.compare_name.clone(), Vec::new()));
    }
    for n in 0..s.o.timing_runs {
        for (handler, name, times) in runtimes.iter_mut() {
            match echo_pod(s, n, handler.clone()).await {
                Ok(t) => times.push(t),
                Err(e) => {
                    rep.fail(
                        "timing: pod running echo hi",
                        &format!("run {} with {name}: {e}", n + 1),
                    );
                    return;
                }
            }
        }
    }
    for (_, name, mut times) in runtimes {
        times.sort();
        let m = times.len();
        let median = if m % 2 == 1 {
            times[m / 2]
        } else {
            (times[m / 2 - 1] + times[m / 2]) / 2
        };
        println!(
            "TIME cri: pod running echo hi, RunPodSandbox to RemovePodSandbox with {name}: median {:.3} s of {m} runs",
            median.as_secs_f64()
        );
    }
    rep.pass("timing: pod running echo hi");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("berth-cri-check: {e}");
            std::process::exit(2);
        }
    };
    let mut rep = Report::default();
    let chan = match connect(&o.socket).await {
        Ok(c) => c,
        Err(e) => {
            rep.fail("connect to the CRI socket", &e);
            std::process::exit(1);
        }
    };
    // The image must be known to the CRI plugin (imported into the k8s.io namespace).
    let mut images = ImageServiceClient::new(chan.clone());
    let img = images
        .image_status(ImageStatusRequest {
            image: Some(ImageSpec {
                image: o.image.clone(),
                ..Default::default()
            }),
            verbose: false,
        })
        .await;
    match img {
        Ok(r) if r.get_ref().image.is_some() => rep.pass("ImageStatus: the image is there"),
        Ok(_) => rep.fail("ImageStatus: the image is there", "not found"),
        Err(e) => rep.fail("ImageStatus: the image is there", &status_err(e)),
    }
    let mut s = Suite {
        o,
        rt: RuntimeServiceClient::new(chan),
        pods: Vec::new(),
    };
    checks(&mut s, &mut rep).await;
    s.remove_all(&mut rep).await;
    timing(&mut s, &mut rep).await;
    s.remove_all(&mut rep).await;
    std::process::exit(if rep.failed > 0 { 1 } else { 0 });
}
