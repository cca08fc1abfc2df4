//! CVE-2019-5736 class: the Berth binary must not be writable from inside the container
//! (src/selfprotect.rs has the design). The original exploit had two halves: reach the
//! runtime's binary through `/proc/<pid>/exe` of a runtime process in the container, or make
//! the runtime's exec of the entrypoint resolve to `/proc/self/exe`; then hold an O_PATH fd,
//! wait for the runtime to exit (so ETXTBSY no longer protects the file) and reopen it for
//! writing. These tests attack each half.

mod common;
use common::*;

use std::ffi::CString;
use std::sync::Mutex;

/// The reopen below fails with ETXTBSY, before the kernel looks at the mount, while any other
/// process runs this binary: the tests of this file take turns.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn open(path: &str, flags: i32) -> Result<i32, std::io::Error> {
    let c = CString::new(path).unwrap();
    // SAFETY: open with a valid NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(fd)
    }
}

/// Creates the container, grabs an O_PATH fd to its (still Berth) init's exe as host root,
/// deletes it, and reopens the fd for writing: the errno of that reopen (None: it worked).
fn reopen_inits_exe_after_exit(rt: &Runtime, b: &Bundle, name: &str) -> Option<i32> {
    let id = unique_id(name);
    rt.create(&id, b);
    let pid = rt.pid(&id);
    let exe = open(&format!("/proc/{pid}/exe"), libc::O_PATH).expect("O_PATH open of exe");
    rt.ok(&["delete", "--force", &id]);
    // No Berth process of this binary runs any more, so only the mount can refuse the write.
    let r = match open(&format!("/proc/self/fd/{exe}"), libc::O_WRONLY) {
        Ok(fd) => {
            unsafe { libc::close(fd) };
            None
        }
        Err(e) => e.raw_os_error(),
    };
    unsafe { libc::close(exe) };
    r
}

fn with_bounding_cap(b: &mut Bundle, cap: &str) {
    b.edit(|c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(cap.into());
        }
    });
}

/// Writes an executable file (mode 0755) into the container's root.
fn executable(b: &Bundle, name: &str, content: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = b.rootfs().join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The launcher refused to run as the container's program: status 127, and no Berth output.
fn assert_launcher_refused(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(127), "{}", stderr(o));
    assert!(!stdout(o).contains("berth"), "{}", stdout(o));
}

fn assert_no_mount_of_the_binary() {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bin = berth_bin().canonicalize().unwrap();
    assert!(
        !mounts.contains(bin.to_str().unwrap()),
        "the protection attaches no mount of the binary anywhere"
    );
}

/// A process with CAP_SYS_PTRACE could open a non-dumpable init's exe: such containers run
/// Berth from a read-only copy of its binary.
#[test]
fn privileged_containers_run_berth_from_a_read_only_binary() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::sh("true");
    with_bounding_cap(&mut b, "CAP_SYS_PTRACE");
    assert_eq!(
        reopen_inits_exe_after_exit(&rt, &b, "selfprot-ptrace"),
        Some(libc::EROFS)
    );
    assert_no_mount_of_the_binary();
}

/// Without a pid namespace of its own, processes outside the container see the init.
#[test]
fn an_init_outside_its_own_pid_namespace_runs_from_a_read_only_binary() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::sh("true");
    b.without_namespace("pid");
    assert_eq!(
        reopen_inits_exe_after_exit(&rt, &b, "selfprot-hostpid"),
        Some(libc::EROFS)
    );
}

/// A profile that stops the launcher's execveat: Berth re-executes from a read-only copy
/// instead, and the container still runs.
#[test]
fn a_seccomp_profile_without_execveat_gets_the_read_only_binary() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::sh("true");
    b.edit(|c| {
        c["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{ "names": ["execveat"], "action": "SCMP_ACT_ERRNO" }]
        })
    });
    assert_eq!(
        reopen_inits_exe_after_exit(&rt, &b, "selfprot-seccomp"),
        Some(libc::EROFS)
    );
    let o = rt.run(&unique_id("selfprot-seccomp-run"), &b);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The default container: a process in it (root, the default capabilities) cannot open the
/// created init's exe, since the init is non-dumpable.
#[test]
fn container_processes_cannot_open_the_inits_exe() {
    let _turn = turn();
    let rt = Runtime::new();
    let b = Bundle::sh("true");
    let id = unique_id("selfprot-peek");
    rt.create(&id, &b);
    let out = rt.ok(&[
        "exec",
        &id,
        "sh",
        "-c",
        "if cat /proc/1/exe >/dev/null 2>&1; then echo OPENED; else echo DENIED; fi; \
         if readlink /proc/1/exe >/dev/null 2>&1; then echo LINK; else echo NOLINK; fi",
    ]);
    assert_eq!(lines(&out), ["DENIED", "NOLINK"], "{out}");
    rt.ok(&["delete", "--force", &id]);
}

/// An entrypoint that is /proc/self/exe: the process that runs is the sealed launcher, which
/// refuses (127); Berth itself never becomes the container's program.
#[test]
fn an_entrypoint_of_proc_self_exe_never_runs_berth() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::busybox();
    b.args(&["/proc/self/exe", "--version"]);
    assert_launcher_refused(&rt.run(&unique_id("selfprot-selfexe"), &b));
}

/// The script variant: `#!/proc/self/exe`. The launcher refuses to be an interpreter, so
/// this ends at once instead of running Berth (or looping).
#[test]
fn a_proc_self_exe_interpreter_never_runs_berth() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::busybox();
    executable(&b, "evil", "#!/proc/self/exe\n");
    b.args(&["/evil", "--version"]);
    assert_launcher_refused(&rt.run(&unique_id("selfprot-shebang"), &b));
}

/// `exec` takes the same route: /proc/self/exe as the program never runs Berth.
#[test]
fn exec_of_proc_self_exe_never_runs_berth() {
    let _turn = turn();
    let rt = Runtime::new();
    let b = Bundle::sh("sleep 30");
    let id = unique_id("selfprot-exec");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    assert_launcher_refused(&rt.berth(&["exec", &id, "/proc/self/exe", "--version"]));
    rt.ok(&["delete", "--force", &id]);
}

/// When the final execve fails, the launcher reports it, and `start` or `exec` prints it.
#[test]
fn a_failed_final_exec_is_reported_by_start_and_exec() {
    let _turn = turn();
    let rt = Runtime::new();
    let mut b = Bundle::busybox();
    executable(&b, "notelf", "not a program\n");
    b.args(&["/notelf"]);
    let id = unique_id("selfprot-enoexec");
    rt.create(&id, &b);
    let o = rt.berth(&["start", &id]);
    assert!(!o.status.success());
    assert_one_error_line(&o, &["exec \"/notelf\"", "ENOEXEC"]);
    rt.ok(&["delete", "--force", &id]);

    let b = Bundle::sh("sleep 30");
    let id = unique_id("selfprot-enoexec-exec");
    executable(&b, "notelf", "not a program\n");
    rt.create(&id, &b);
    rt.ok(&["start", &id]);
    let o = rt.berth(&["exec", &id, "/notelf"]);
    assert!(!o.status.success());
    assert_one_error_line(&o, &["exec \"/notelf\"", "ENOEXEC"]);
    rt.ok(&["delete", "--force", &id]);
}
