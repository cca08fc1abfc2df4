//! Strict seccomp profiles: nothing Berth does after loading the container's filter may need a
//! system call the profile denies. The profiles here allow what busybox `sh -c 'echo ok'`
//! (and `sleep`, for the exec target) needs on x86-64, plus what any runtime needs after the
//! filter (runc's list: capget/capset, prctl, setresuid/setresgid/setgroups, execve), and
//! nothing newer: no close_range, openat2, getcwd, memfd_create, execveat, clone3, pidfd_*, and
//! no sendto (errors after the filter are reported with write).

mod common;
use common::*;
use serde_json::{json, Value};

/// What busybox needs for `sh -c 'echo ok'` and `sleep` (strace of busybox-static 1.36).
const BUSYBOX_CALLS: &[&str] = &[
    "arch_prctl",
    "brk",
    "clock_nanosleep",
    "execve",
    "exit_group",
    "getpid",
    "getppid",
    "getrandom",
    "getuid",
    "ioctl",
    "mprotect",
    "newfstatat",
    "prctl",
    "prlimit64",
    "readlink",
    "rseq",
    "rt_sigaction",
    "rt_sigprocmask",
    "set_robust_list",
    "set_tid_address",
    "uname",
    "write",
];

/// What a runtime needs after loading a filter before the uid switch (runc: the bounding set,
/// keep-caps, the identity switch, capset, execve).
const RUNTIME_CALLS: &[&str] = &[
    "capget",
    "capset",
    "prctl",
    "setresgid",
    "setresuid",
    "setgroups",
    "execve",
];

/// An x86-64 profile with `default` as its default action that allows only the calls above
/// (minus `without`).
fn strict(default: Value, without: &[&str]) -> Value {
    let mut names: Vec<&str> = BUSYBOX_CALLS
        .iter()
        .chain(RUNTIME_CALLS)
        .copied()
        .filter(|n| !without.contains(n))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut p = json!({
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    if let (Some(o), Some(d)) = (p.as_object_mut(), default.as_object()) {
        o.extend(d.clone());
    }
    p
}

fn errno_profile() -> Value {
    strict(json!({"defaultAction": "SCMP_ACT_ERRNO"}), &[])
}

fn enosys_profile() -> Value {
    strict(
        json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}),
        &[],
    )
}

fn x86_64() -> bool {
    if cfg!(target_arch = "x86_64") {
        return true;
    }
    println!("SKIP: the strict profiles list x86-64 system calls");
    false
}

/// A bundle running `script` under `profile`; an `env` member of `profile` (not a seccomp
/// field) becomes `process.env`.
fn bundle(script: &str, profile: &Value, nnp: bool) -> Bundle {
    let mut b = Bundle::sh(script);
    let mut profile = profile.clone();
    if let Some(env) = profile.as_object_mut().and_then(|o| o.remove("env")) {
        b.edit(|c| c["process"]["env"] = env);
    }
    b.edit(|c| {
        c["linux"]["seccomp"] = profile;
        c["process"]["noNewPrivileges"] = json!(nnp);
    });
    b
}

/// `run`, `create`+`start` and `exec` under `profile`, with and without noNewPrivileges: each
/// prints ok.
fn all_paths_print_ok(profile: &Value, tag: &str, what: &str) {
    for nnp in [false, true] {
        let rt = Runtime::new();
        let b = bundle("echo ok", profile, nnp);
        let id = unique_id(&format!("scs-{tag}-run-{nnp}"));
        let o = rt.run_timeout(&id, &b, &[]);
        assert!(
            o.status.success() && stdout(&o) == "ok\n",
            "{what}, nnp={nnp}: run: {}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );

        let id = unique_id(&format!("scs-{tag}-start-{nnp}"));
        rt.create(&id, &b);
        let o = rt.berth(&["start", &id]);
        assert!(
            o.status.success(),
            "{what}, nnp={nnp}: start: {}",
            stderr(&o)
        );
        assert!(
            rt.wait_status(&id, "stopped", SECS10),
            "{what}, nnp={nnp}: the container must run to its end"
        );
        let out = std::fs::read_to_string(b.path().join(format!("{id}.stdout"))).unwrap();
        assert_eq!(out, "ok\n", "{what}, nnp={nnp}: create+start");
        rt.ok(&["delete", &id]);

        let b = bundle("sleep 1000", profile, nnp);
        let id = unique_id(&format!("scs-{tag}-exec-{nnp}"));
        rt.create(&id, &b);
        rt.ok(&["start", &id]);
        let o = rt.berth(&["exec", &id, "sh", "-c", "echo ok"]);
        assert!(
            o.status.success() && stdout(&o) == "ok\n",
            "{what}, nnp={nnp}: exec: {}\nstdout: {}\nstderr: {}",
            o.status,
            stdout(&o),
            stderr(&o)
        );
        rt.ok(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &id, &b);
    }
}

#[test]
fn a_profile_without_close_range_getcwd_or_newer_calls_runs_every_path() {
    if x86_64() {
        all_paths_print_ok(&errno_profile(), "eperm", "default EPERM");
    }
}

#[test]
fn a_profile_whose_default_is_enosys_runs_every_path() {
    if x86_64() {
        all_paths_print_ok(&enosys_profile(), "enosys", "default ENOSYS");
    }
}

#[test]
fn a_profile_that_kills_on_anything_else_runs_every_path() {
    if x86_64() {
        // busybox sh asks getcwd only when $PWD does not name the cwd.
        let mut p = strict(json!({"defaultAction": "SCMP_ACT_KILL_PROCESS"}), &[]);
        p["env"] = json!(["PATH=/bin", "PWD=/"]);
        all_paths_print_ok(&p, "kill", "default KILL_PROCESS");
    }
}

#[test]
fn a_profile_that_denies_only_getcwd_runs_every_path() {
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}
    ]});
    all_paths_print_ok(&profile, "getcwd", "getcwd denied");
}

#[test]
fn a_profile_that_allows_the_launcher_runs_every_path() {
    // With execveat, fcntl and writev allowed the final exec goes through the launcher.
    if x86_64() {
        let mut p = errno_profile();
        p["syscalls"]
            .as_array_mut()
            .unwrap()
            .push(json!({"names": ["execveat", "fcntl", "writev"], "action": "SCMP_ACT_ALLOW"}));
        all_paths_print_ok(&p, "launcher", "launcher allowed");
    }
}

/// An error after the filter (here the program vanished between create and start, so execve
/// fails) still reaches `start`, although the profile denies sendto.
#[test]
fn an_exec_failure_after_the_filter_fails_start() {
    if !x86_64() {
        return;
    }
    for nnp in [false, true] {
        let rt = Runtime::new();
        let mut b = bundle("echo ok", &errno_profile(), nnp);
        std::fs::copy(BUSYBOX, b.rootfs().join("bin/vanishing")).unwrap();
        b.args(&["/bin/vanishing", "echo", "ok"]);
        let id = unique_id(&format!("scs-vanish-{nnp}"));
        rt.create(&id, &b);
        std::fs::remove_file(b.rootfs().join("bin/vanishing")).unwrap();
        let o = rt.berth(&["start", &id]);
        assert!(!o.status.success(), "nnp={nnp}: start must fail");
        assert_one_error_line(&o, &["/bin/vanishing", "No such file or directory"]);
        rt.ok(&["delete", "--force", &id]);
        assert_nothing_left(&rt, &id, &b);
    }
}

// --- The working directory is entered before the filter and before dropping privileges. ---

/// A started container running `sleep`, with `edit` applied to its config.
fn sleeping(rt: &Runtime, tag: &str, edit: impl FnOnce(&mut Value)) -> (String, Bundle) {
    let mut b = Bundle::sh("sleep 1000");
    b.edit(edit);
    let id = unique_id(tag);
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    (id, b)
}

/// `exec FLAGS ID sh -c SCRIPT`, captured.
fn exec_sh(rt: &Runtime, id: &str, flags: &[&str], script: &str) -> std::process::Output {
    let mut args = vec!["exec"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[id, "sh", "-c", script]);
    rt.berth(&args)
}

fn exec_pwd(rt: &Runtime, id: &str, flags: &[&str]) -> std::process::Output {
    exec_sh(rt, id, flags, "pwd; id -u")
}

#[test]
fn exec_enters_a_cwd_only_root_can_enter_before_dropping_privileges() {
    // /root is 0700 root: runc enters it as root, then becomes the user. Also under a profile
    // that denies getcwd, with the filter loaded before the uid switch.
    let getcwd_denied = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"}]});
    for profile in [None, Some(getcwd_denied)] {
        let rt = Runtime::new();
        let (id, b) = sleeping(&rt, "scs-rootcwd", |c| {
            if let Some(p) = &profile {
                c["linux"]["seccomp"] = p.clone();
                c["process"]["noNewPrivileges"] = json!(false);
            }
        });
        std::fs::set_permissions(
            b.rootfs().join("root"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        // busybox's pwd needs getcwd; the kernel's view of the cwd does not.
        let script = match profile {
            None => "pwd; id -u",
            Some(_) => "readlink /proc/self/cwd; id -u",
        };
        let o = exec_sh(&rt, &id, &["--user", "1000", "--cwd", "/root"], script);
        assert!(
            o.status.success(),
            "profile {profile:?}: {}\n{}",
            o.status,
            stderr(&o)
        );
        assert_eq!(stdout(&o), "/root\n1000\n", "profile {profile:?}");
        rt.ok(&["delete", "--force", &id]);
    }
}

/// A user-namespaced container (container ids 0.. are host ids 100000..).
fn userns(c: &mut Value) {
    c["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    c["linux"]["uidMappings"] = map.clone();
    c["linux"]["gidMappings"] = map;
    // cgroupfs cannot be mounted from this user namespace.
    if let Some(m) = c["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/sys/fs/cgroup");
    }
}

#[test]
fn a_cwd_only_the_user_can_enter_is_entered_as_the_user_and_one_no_one_can_is_an_error() {
    if skip_without_namespace(
        "a_cwd_only_the_user_can_enter_is_entered_as_the_user_and_one_no_one_can_is_an_error",
        "user",
    ) {
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    let rt = Runtime::new();
    let (id, b) = sleeping(&rt, "scs-usercwd", userns);
    // Owned by the container's uid 1000 but by an unmapped gid: the container's root gets no
    // override for it (capabilities in a user namespace need the owner and group mapped),
    // its owner may enter.
    let mine = b.rootfs().join("mine");
    std::fs::create_dir(&mine).unwrap();
    chown(&mine, Some(101000), Some(0)).unwrap();
    std::fs::set_permissions(&mine, PermissionsExt::from_mode(0o700)).unwrap();
    // Owned by unmapped ids: nobody in the container may enter.
    let nobody = b.rootfs().join("nobody");
    std::fs::create_dir(&nobody).unwrap();
    std::fs::set_permissions(&nobody, PermissionsExt::from_mode(0o700)).unwrap();

    let as_root = exec_pwd(&rt, &id, &["--cwd", "/mine"]);
    assert_one_error_line(&as_root, &["process.cwd", "/mine", "Permission denied"]);
    let o = exec_pwd(&rt, &id, &["--user", "1000", "--cwd", "/mine"]);
    assert!(o.status.success(), "{}: {}", o.status, stderr(&o));
    assert_eq!(stdout(&o), "/mine\n1000\n");
    let o = exec_pwd(&rt, &id, &["--user", "1000", "--cwd", "/nobody"]);
    assert_one_error_line(&o, &["process.cwd", "/nobody", "Permission denied"]);
    rt.ok(&["delete", "--force", &id]);
    assert_nothing_left(&rt, &id, &b);
}

// --- Berth itself running under a filter that predates close_range. ---

/// Makes the child (Berth) run under a filter that answers close_range with EPERM, as a
/// runtime inside a container with an older profile does, and hands it an inheritable fd 3.
fn under_filter_without_close_range(cmd: &mut std::process::Command, fd3: std::os::fd::RawFd) {
    use std::os::unix::process::CommandExt;
    const LD_ABS: u16 = 0x20;
    const JEQ: u16 = 0x15;
    const RET: u16 = 0x06;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let prog = [
        ins(LD_ABS, 0, 0, 4),                             // arch
        ins(JEQ, 0, 3, 0xc000_003e),                      // x86-64, else allow
        ins(LD_ABS, 0, 0, 0),                             // nr
        ins(JEQ, 0, 1, libc::SYS_close_range as u32),     // close_range?
        ins(RET, 0, 0, 0x0005_0000 | libc::EPERM as u32), // SECCOMP_RET_ERRNO
        ins(RET, 0, 0, 0x7fff_0000),                      // SECCOMP_RET_ALLOW
    ];
    // SAFETY: only async-signal-safe system calls run between fork and exec; `prog` is moved
    // into the closure and outlives the seccomp call.
    unsafe {
        cmd.pre_exec(move || {
            let fprog = libc::sock_fprog {
                len: prog.len() as u16,
                filter: prog.as_ptr() as *mut libc::sock_filter,
            };
            if libc::dup2(fd3, 3) < 0
                || libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::syscall(libc::SYS_seccomp, 1, 0, &fprog as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_close_range_the_fds_are_marked_one_by_one() {
    if !x86_64() {
        return;
    }
    let rt = Runtime::new();
    let b = Bundle::sh("ls /proc/self/fd");
    let id = unique_id("scs-noclose");
    let leak = std::fs::File::open(b.path()).unwrap();
    rt.track(&id);
    let mut cmd = rt.cmd();
    cmd.args(["run", "--bundle", b.path_str(), &id]);
    under_filter_without_close_range(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&leak));
    let o = output_timeout(cmd, std::time::Duration::from_secs(30));
    assert!(o.status.success(), "{}: {}", o.status, stderr(&o));
    assert_eq!(fd_list(&stdout(&o)), [0, 1, 2], "{}", stdout(&o));
    assert_nothing_left(&rt, &id, &b);
}

#[test]
fn a_profile_without_write_is_refused_when_the_runtime_reports_after_the_filter() {
    if !x86_64() {
        return;
    }
    // With noNewPrivileges false the runtime's last steps run under the filter, and an error
    // there is reported with write: without it a failed start would look like a success
    // (runc needs write there too).
    let rt = Runtime::new();
    let b = bundle(
        "true",
        &strict(json!({"defaultAction": "SCMP_ACT_ERRNO"}), &["write"]),
        false,
    );
    let id = unique_id("scs-nowrite");
    let o = rt.run_timeout(&id, &b, &[]);
    assert_one_error_line(&o, &["linux.seccomp", "write", "noNewPrivileges"]);
    assert_nothing_left(&rt, &id, &b);
    // With noNewPrivileges only execve follows the filter: the container runs.
    let b = bundle(
        "true",
        &strict(json!({"defaultAction": "SCMP_ACT_ERRNO"}), &["write"]),
        true,
    );
    let o = rt.run_timeout(&id, &b, &[]);
    assert!(o.status.success(), "{}: {}", o.status, stderr(&o));
    assert_nothing_left(&rt, &id, &b);
}
