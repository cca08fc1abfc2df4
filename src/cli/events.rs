//! `berth events [--stats] [--interval D] ID`: runc's event stream, one JSON object per line:
//! `{"type":"stats","id":…,"data":{…}}` every interval, `{"type":"oom","id":…}` when the OOM
//! killer acts; with --stats, one stats event and exit.

use super::Global;
use crate::cgroups::commands;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Stats collection interval (a duration: 5s, 500ms, 1m…)
    #[arg(long, default_value = "5s", value_parser = commands::parse_duration)]
    pub interval: std::time::Duration,
    /// Print the container's stats once, then exit
    #[arg(long)]
    pub stats: bool,
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    commands::events(&g.root, &a.id, a.stats, a.interval)?;
    Ok(0)
}
