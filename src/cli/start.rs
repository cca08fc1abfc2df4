//! `berth start ID`

use super::Global;
use crate::container::{lifecycle, Container};
use crate::error::Error;

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
    lifecycle::start(&mut c)?;
    Ok(0)
}
