//! The D-Bus side of the systemd driver: a blocking connection to systemd's manager
//! (org.freedesktop.systemd1 on the system bus, or the user's bus in rootless mode) and the
//! calls the driver makes: StartTransientUnit, StopUnit, ResetFailedUnit, SetUnitProperties,
//! each waiting for its job's `JobRemoved` signal. The wire protocol is rustbus's.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustbus::connection::Timeout;
use rustbus::message_builder::MarshalledMessage;
use rustbus::wire::ObjectPath;
use rustbus::{DuplexConn, MessageBuilder, MessageType};

use super::super::CgroupError;
use super::props::{Props, Value};

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";

/// How long a call or a job may take (runc waits 30 s for a unit's job too).
pub const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// An error reply: its D-Bus name and message.
struct Reply {
    name: String,
    msg: String,
}

impl Reply {
    fn is(&self, short: &str) -> bool {
        self.name.rsplit('.').next() == Some(short)
    }
}

pub struct Bus {
    conn: DuplexConn,
    /// Where it connected (for messages).
    addr: PathBuf,
    /// JobRemoved signals seen while waiting for something else: (job path, result).
    removed: Vec<(String, String)>,
}

fn err(msg: impl Into<String>) -> CgroupError {
    CgroupError::Systemd(msg.into())
}

/// The socket of the bus the driver talks to: `$DBUS_SYSTEM_BUS_ADDRESS` or the standard system
/// bus socket; in rootless mode `$DBUS_SESSION_BUS_ADDRESS` or `$XDG_RUNTIME_DIR/bus`.
pub fn address(user: bool) -> Result<PathBuf, CgroupError> {
    let var = if user {
        "DBUS_SESSION_BUS_ADDRESS"
    } else {
        "DBUS_SYSTEM_BUS_ADDRESS"
    };
    if let Ok(a) = std::env::var(var) {
        // `unix:path=/run/dbus/system_bus_socket[,guid=…]`; other transports are not for us.
        for part in a.split(';') {
            if let Some(rest) = part.strip_prefix("unix:") {
                for kv in rest.split(',') {
                    if let Some(p) = kv.strip_prefix("path=") {
                        return Ok(PathBuf::from(p));
                    }
                }
            }
        }
        return Err(err(format!(
            "${var} is {a:?}: only unix:path= addresses are supported"
        )));
    }
    if user {
        let dir = std::env::var("XDG_RUNTIME_DIR").map_err(|_| {
            err("rootless: neither $DBUS_SESSION_BUS_ADDRESS nor $XDG_RUNTIME_DIR is set, so the user's systemd cannot be reached")
        })?;
        return Ok(Path::new(&dir).join("bus"));
    }
    Ok(PathBuf::from("/run/dbus/system_bus_socket"))
}

/// Marks an fd close-on-exec (rustbus makes its socket without SOCK_CLOEXEC).
fn set_cloexec(fd: i32) -> std::io::Result<()> {
    // SAFETY: F_SETFD on an fd this process owns changes only its flags.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Bus {
    /// Connects, says Hello, and subscribes to the manager's job signals.
    pub fn connect(user: bool) -> Result<Bus, CgroupError> {
        let addr = address(user)?;
        let unreachable = |e: &dyn std::fmt::Display| {
            err(format!(
                "cannot reach systemd over D-Bus at {}: {e} (is systemd running, with dbus? without --systemd-cgroup Berth manages cgroupfs itself)",
                addr.display()
            ))
        };
        let ua = nix026::sys::socket::UnixAddr::new(&addr).map_err(|e| unreachable(&e))?;
        let mut conn = DuplexConn::connect_to_bus(ua, false).map_err(|e| unreachable(&e))?;
        set_cloexec(conn.recv.as_raw_fd()).map_err(|e| unreachable(&e))?;
        set_cloexec(conn.send.as_raw_fd()).map_err(|e| unreachable(&e))?;
        conn.send_hello(Timeout::Duration(JOB_TIMEOUT))
            .map_err(|e| unreachable(&e))?;
        let mut bus = Bus {
            conn,
            addr,
            removed: Vec::new(),
        };
        let mut m = MessageBuilder::new()
            .call("AddMatch")
            .with_interface("org.freedesktop.DBus")
            .on("/org/freedesktop/DBus")
            .at("org.freedesktop.DBus")
            .build();
        m.body
            .push_param(
                "type='signal',sender='org.freedesktop.systemd1',interface='org.freedesktop.systemd1.Manager',member='JobRemoved'",
            )
            .map_err(|e| err(format!("AddMatch: {e}")))?;
        bus.call(m, "AddMatch")?
            .map_err(|r| err(format!("AddMatch: {}: {}", r.name, r.msg)))?;
        // systemd sends job signals only while a client is subscribed.
        bus.call(manager("Subscribe"), "Subscribe")?
            .map_err(|r| err(format!("Subscribe: {}: {}", r.name, r.msg)))?;
        Ok(bus)
    }

    /// Sends a call and reads until its reply; signals met on the way are kept.
    fn call(
        &mut self,
        msg: MarshalledMessage,
        what: &str,
    ) -> Result<Result<MarshalledMessage, Reply>, CgroupError> {
        let addr = self.addr.display().to_string();
        let io = |e: &dyn std::fmt::Display| err(format!("{what} (D-Bus at {addr}): {e}"));
        let serial = self
            .conn
            .send
            .send_message(&msg)
            .map_err(|e| io(&e))?
            .write_all()
            .map_err(|(ctx, e)| {
                ctx.force_finish();
                io(&e)
            })?;
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io(&format!("no answer in {} s", JOB_TIMEOUT.as_secs())));
            }
            let m = self
                .conn
                .recv
                .get_next_message(Timeout::Duration(left))
                .map_err(|e| io(&e))?;
            if m.dynheader.response_serial == Some(serial) {
                return Ok(match m.typ {
                    MessageType::Error => Err(Reply {
                        name: m.dynheader.error_name.clone().unwrap_or_default(),
                        msg: m.body.parser().get::<String>().unwrap_or_default(),
                    }),
                    _ => Ok(m),
                });
            }
            self.keep_signal(&m);
        }
    }

    fn keep_signal(&mut self, m: &MarshalledMessage) {
        if m.typ == MessageType::Signal && m.dynheader.member.as_deref() == Some("JobRemoved") {
            let mut p = m.body.parser();
            if let Ok((_id, job, _unit, result)) =
                p.get4::<u32, ObjectPath<String>, String, String>()
            {
                self.removed.push((job.as_ref().to_string(), result));
            }
        }
    }

    /// Waits for the job's JobRemoved signal; its result (`done`, `failed`, `timeout`, …).
    fn wait_job(&mut self, job: &str, unit: &str) -> Result<String, CgroupError> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            if let Some(i) = self.removed.iter().position(|(j, _)| j == job) {
                return Ok(self.removed.swap_remove(i).1);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(err(format!(
                    "unit {unit}: systemd's job {job} did not finish in {} s",
                    JOB_TIMEOUT.as_secs()
                )));
            }
            let m = self
                .conn
                .recv
                .get_next_message(Timeout::Duration(left))
                .map_err(|e| err(format!("unit {unit}: waiting for job {job}: {e}")))?;
            self.keep_signal(&m);
        }
    }

    fn job_path(m: &MarshalledMessage, what: &str) -> Result<String, CgroupError> {
        m.body
            .parser()
            .get::<ObjectPath<String>>()
            .map(|p| p.as_ref().to_string())
            .map_err(|e| err(format!("{what}: unexpected reply: {e}")))
    }

    /// StartTransientUnit in mode `replace`, then waits for the job. A unit of that name that
    /// exists already is reset once (a failed one left by a dead container goes away) and the
    /// start retried; if it still exists, it is in use. `accepted` is set once systemd took the
    /// request (from then on the unit is the caller's to stop, whatever the job's outcome).
    pub fn start_transient(
        &mut self,
        unit: &str,
        props: &Props,
        accepted: &std::cell::Cell<bool>,
    ) -> Result<(), CgroupError> {
        for attempt in 0..2 {
            let mut m = manager("StartTransientUnit");
            let aux: Vec<(String, Vec<(String, Value)>)> = Vec::new();
            m.body
                .push_param4(unit, "replace", props.as_slice(), aux.as_slice())
                .map_err(|e| err(format!("unit {unit}: cannot encode its properties: {e}")))?;
            match self.call(m, "StartTransientUnit")? {
                Ok(r) => {
                    accepted.set(true);
                    let job = Self::job_path(&r, "StartTransientUnit")?;
                    let result = self.wait_job(&job, unit)?;
                    if result != "done" {
                        let _ = self.reset_failed(unit);
                        return Err(err(format!(
                            "unit {unit}: systemd's start job ended with result {result:?} (journalctl -u {unit} says why)"
                        )));
                    }
                    return Ok(());
                }
                Err(r) if r.is("UnitExists") && attempt == 0 => {
                    let _ = self.reset_failed(unit);
                }
                Err(r) if r.is("UnitExists") => {
                    return Err(err(format!(
                        "unit {unit} exists already and is in use (another container?): {}",
                        r.msg
                    )));
                }
                Err(r) => {
                    return Err(err(format!(
                        "StartTransientUnit {unit}: {}: {}",
                        r.name, r.msg
                    )))
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// StopUnit (mode `replace`) and wait until it is stopped; a unit that is not loaded is
    /// already gone. Then reset-failed, so no failed unit stays listed.
    pub fn stop(&mut self, unit: &str) -> Result<(), CgroupError> {
        let mut m = manager("StopUnit");
        m.body
            .push_param2(unit, "replace")
            .map_err(|e| err(format!("StopUnit {unit}: {e}")))?;
        match self.call(m, "StopUnit")? {
            Ok(r) => {
                let job = Self::job_path(&r, "StopUnit")?;
                let result = self.wait_job(&job, unit)?;
                if result != "done" {
                    let _ = self.reset_failed(unit);
                    return Err(err(format!(
                        "unit {unit}: systemd's stop job ended with result {result:?}"
                    )));
                }
            }
            Err(r) if r.is("NoSuchUnit") => {}
            Err(r) => return Err(err(format!("StopUnit {unit}: {}: {}", r.name, r.msg))),
        }
        let _ = self.reset_failed(unit);
        Ok(())
    }

    pub fn reset_failed(&mut self, unit: &str) -> Result<(), CgroupError> {
        let mut m = manager("ResetFailedUnit");
        m.body
            .push_param(unit)
            .map_err(|e| err(format!("ResetFailedUnit {unit}: {e}")))?;
        match self.call(m, "ResetFailedUnit")? {
            Ok(_) => Ok(()),
            Err(r) if r.is("NoSuchUnit") => Ok(()),
            Err(r) => Err(err(format!(
                "ResetFailedUnit {unit}: {}: {}",
                r.name, r.msg
            ))),
        }
    }

    /// SetUnitProperties (runtime only: nothing is written under /etc).
    pub fn set_properties(&mut self, unit: &str, props: &Props) -> Result<(), CgroupError> {
        if props.is_empty() {
            return Ok(());
        }
        let mut m = manager("SetUnitProperties");
        m.body
            .push_param3(unit, true, props.as_slice())
            .map_err(|e| err(format!("unit {unit}: cannot encode its properties: {e}")))?;
        self.call(m, "SetUnitProperties")?
            .map(|_| ())
            .map_err(|r| err(format!("SetUnitProperties {unit}: {}: {}", r.name, r.msg)))
    }
}

fn manager(member: &str) -> MarshalledMessage {
    MessageBuilder::new()
        .call(member)
        .with_interface(MANAGER)
        .on(PATH)
        .at(DEST)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_address_from_the_environment() {
        // Only this test touches these variables.
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/x/bus,guid=12");
        assert_eq!(address(false).unwrap(), PathBuf::from("/x/bus"));
        std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", "tcp:host=a");
        assert!(address(false)
            .unwrap_err()
            .to_string()
            .contains("unix:path="));
        std::env::remove_var("DBUS_SYSTEM_BUS_ADDRESS");
        assert_eq!(
            address(false).unwrap(),
            PathBuf::from("/run/dbus/system_bus_socket")
        );
    }

    #[test]
    fn no_systemd_is_one_clear_error() {
        std::env::set_var(
            "DBUS_SESSION_BUS_ADDRESS",
            "unix:path=/nonexistent/berth-bus",
        );
        let e = Bus::connect(true).err().unwrap().to_string();
        std::env::remove_var("DBUS_SESSION_BUS_ADDRESS");
        assert!(
            e.contains("cannot reach systemd over D-Bus at /nonexistent/berth-bus"),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
    }
}
