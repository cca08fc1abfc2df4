//! `berth start ID`; with `$NOTIFY_SOCKET`, returns once the container reported `READY=1`
//! (see `sdnotify`).

use super::Global;
use crate::container::{lifecycle, Container};
use crate::error::Error;
use crate::sdnotify::Relay;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let mut c = Container::load(&g.root, &a.id)?;
    crate::logging::debug_with(|| {
        format!(
            "start {}: state directory {}, releasing init pid {}",
            a.id,
            c.dir.display(),
            c.state.as_ref().map_or(0, |s| s.pid)
        )
    });
    crate::fault::point("start:loaded")?;
    // Bound before the init is released, so that its first message finds the socket.
    let notify = Relay::prepare(&c)?;
    lifecycle::start(&mut c)?;
    if let Some(relay) = notify {
        let pid = c.state.as_ref().map_or(0, |s| s.pid);
        // Other commands (kill, exec, state) need the lock while the container gets ready.
        drop(c);
        relay.wait_ready(pid)?;
    }
    Ok(0)
}
