//! `berth delete [--force] ID`

use super::Global;
use crate::container::{lifecycle, Container, StateError};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kill the container first if it is still running
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    crate::container::remove_interrupted_new_dirs(&g.root);
    let c = match Container::load(&g.root, &a.id) {
        Ok(c) => c,
        // Engines delete --force containers that are already gone; that is success.
        Err(StateError::NotFound(_)) if a.force => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    crate::logging::debug_with(|| {
        format!(
            "delete {}: status {}, force {}, removing state directory {} and cgroup {:?}",
            a.id,
            c.status(),
            a.force,
            c.dir.display(),
            c.state
                .as_ref()
                .and_then(|s| s.cgroup.as_ref())
                .map(|r| &r.paths)
        )
    });
    crate::fault::point("delete:loaded")?;
    lifecycle::delete(c, a.force)?;
    Ok(0)
}
