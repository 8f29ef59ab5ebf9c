//! `servesim serve`: the fake vLLM OpenAI server (issue 3).

use anyhow::{Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct ServeArgs {}

pub fn run(_args: ServeArgs) -> Result<()> {
    bail!("servesim serve is not built yet (issue 3)")
}
