//! CVE-2019-5736 class: the Berth binary must not be writable from inside the container.
//! While a container is `created`, its init is still Berth's own code. The original exploit
//! grabbed an O_PATH fd to /proc/<pid>/exe of such a process, waited for the runtime to exit
//! (so ETXTBSY no longer protects the file) and reopened the fd for writing. With Berth that
//! reopen must fail with EROFS: the init runs from a read-only (detached) mount of the binary.

mod common;
use common::*;

use std::ffi::CString;

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

#[test]
fn the_inits_binary_cannot_be_reopened_for_writing() {
    let rt = Runtime::new();
    let b = Bundle::sh("true");
    let id = unique_id("selfprot");
    rt.ok(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    let pid = rt.state(&id)["pid"].as_i64().unwrap();
    let exe = open(&format!("/proc/{pid}/exe"), libc::O_PATH).expect("O_PATH open of exe");
    rt.ok(&["delete", "--force", &id]);
    // No Berth process of this binary runs any more, so only the mount can refuse the write.
    match open(&format!("/proc/self/fd/{exe}"), libc::O_WRONLY) {
        Ok(fd) => {
            unsafe { libc::close(fd) };
            panic!("the init's binary was writable through its /proc/PID/exe");
        }
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EROFS), "got {e}"),
    }
    unsafe { libc::close(exe) };
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let bin = berth_bin().canonicalize().unwrap();
    assert!(
        !mounts.contains(bin.to_str().unwrap()),
        "the protection attaches no mount of the binary anywhere"
    );
}
