//! `berth state ID`: the OCI state as JSON (indented, as runc prints it).

use super::Global;
use crate::container::{lifecycle, Container, StateError};
use crate::error::Error;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Container id
    pub id: String,
}

pub fn run(g: &Global, a: Args) -> Result<i32, Error> {
    let c = Container::load(&g.root, &a.id)?;
    let status = c.status();
    crate::logging::debug_with(|| {
        format!(
            "state {}: status {status}, state directory {}",
            a.id,
            c.dir.display()
        )
    });
    let st = c
        .state
        .as_ref()
        .ok_or_else(|| StateError::Interrupted(a.id.clone()))?;
    let out =
        serde_json::to_string_pretty(&lifecycle::oci_state(st, status)).expect("state serialises");
    println!("{out}");
    Ok(0)
}
