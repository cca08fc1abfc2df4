//! `berth resume ID`: thaws a paused container.

use super::Global;
use crate::cgroups::commands;
use crate::container::Container;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let c = Container::load(&g.root, &a.id)?;
    commands::resume(&c)?;
    Ok(0)
}
