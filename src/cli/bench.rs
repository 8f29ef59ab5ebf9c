//! `servesim bench`: the load generator against any OpenAI-compatible endpoint (issue 4).

use anyhow::{Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {}

pub fn run(_args: BenchArgs) -> Result<()> {
    bail!("servesim bench is not built yet (issue 4)")
}
