//! `berth ps [--format table|json] ID [PS ARGS…]`: the container's processes, as a JSON array
//! of pids, or as `ps` prints them (default `ps -ef`) filtered to the container's pids.

use super::Global;
use crate::cgroups::commands;
use crate::container::Container;
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Output format: table or json
    #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
    pub format: String,
    /// Container id
    pub id: String,
    /// Arguments for ps (table format)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let c = Container::load(&g.root, &a.id)?;
    commands::ps(&c, a.format == "json", &a.ps_args)?;
    Ok(0)
}
