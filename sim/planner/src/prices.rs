//! GPU prices: dollars per GPU-hour by catalogue GPU, from the built-in snapshot
//! (`models/catalogue/prices.toml`, every figure with its dated source), a user's file of the same
//! shape, and one-card overrides (`--gpu-cost h100=4.5`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use servesim_models::Profile;

use crate::PlanError;

/// Hours in the planner's month: 8760 / 12.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// One card's price and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// US dollars per GPU-hour.
    pub usd_per_hour: f64,
    /// The public snapshot or contract the figure comes from.
    #[serde(default)]
    pub source: String,
}

/// Prices of the cards a plan may use, keyed by catalogue GPU name (sorted, so JSON is stable).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    pub gpu: BTreeMap<String, Price>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PricesFile {
    gpu: BTreeMap<String, Price>,
}

impl Prices {
    /// The built-in snapshot.
    pub fn builtin() -> Result<Prices, PlanError> {
        Prices::parse(
            servesim_models::gpu::PRICES_TOML,
            "models/catalogue/prices.toml",
        )
    }

    /// A prices file's text; GPU keys may be catalogue names or their short forms (`h100`).
    pub fn parse(text: &str, origin: &str) -> Result<Prices, PlanError> {
        let bad = |message: String| PlanError::Prices {
            origin: origin.to_string(),
            message,
        };
        let file: PricesFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut gpu = BTreeMap::new();
        for (key, price) in file.gpu {
            let name = gpu_name(&key).map_err(|e| bad(e.to_string()))?;
            if !(price.usd_per_hour.is_finite() && price.usd_per_hour >= 0.0) {
                return Err(bad(format!("{key}: usd_per_hour must be >= 0")));
            }
            gpu.insert(name, price);
        }
        Ok(Prices { gpu })
    }

    /// Set one card's price (`--gpu-cost NAME=USD`).
    pub fn override_one(&mut self, spec: &str) -> Result<(), PlanError> {
        let (name, usd) = spec.split_once('=').ok_or_else(|| {
            PlanError::Invalid(format!("--gpu-cost '{spec}': expected GPU=USD_PER_HOUR"))
        })?;
        let usd: f64 = usd
            .trim()
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| {
                PlanError::Invalid(format!("--gpu-cost '{spec}': '{usd}' is not a price >= 0"))
            })?;
        let name = gpu_name(name.trim())?;
        self.gpu.insert(
            name,
            Price {
                usd_per_hour: usd,
                source: "--gpu-cost on the command line".into(),
            },
        );
        Ok(())
    }

    /// Dollars per GPU-hour of catalogue GPU `name`.
    pub fn usd_per_hour(&self, name: &str) -> Option<f64> {
        self.gpu.get(name).map(|p| p.usd_per_hour)
    }
}

/// The catalogue GPU a name means: the catalogue's own name, or a unique one that contains it
/// (`a6000` is `rtx-a6000`, `h100` is `h100-sxm`, `a100` is `a100-80gb`), case-insensitive.
pub fn gpu_name(name: &str) -> Result<String, PlanError> {
    let (gpus, _) = Profile::catalogue_names();
    let want = name.trim().to_lowercase();
    if gpus.contains(&want) {
        return Ok(want);
    }
    let hits: Vec<&String> = gpus.iter().filter(|g| g.contains(&want)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        _ => Err(PlanError::Invalid(format!(
            "unknown or ambiguous GPU '{name}' (catalogue GPUs: {})",
            gpus.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_snapshot_prices_every_catalogue_gpu_with_a_source() {
        let prices = Prices::builtin().expect("builtin prices");
        let (gpus, _) = Profile::catalogue_names();
        for g in gpus {
            let p = prices
                .gpu
                .get(&g)
                .unwrap_or_else(|| panic!("{g} has no price"));
            assert!(p.usd_per_hour > 0.0 && p.source.contains("2026"), "{g}");
        }
    }

    #[test]
    fn short_names_and_overrides_resolve_to_catalogue_gpus() {
        assert_eq!(gpu_name("a6000").ok().as_deref(), Some("rtx-a6000"));
        assert_eq!(gpu_name("H100").ok().as_deref(), Some("h100-sxm"));
        assert!(gpu_name("l4x").is_err());
        // "l4" is a catalogue name of its own, though "l40s" contains it.
        assert_eq!(gpu_name("l4").ok().as_deref(), Some("l4"));
        let mut p = Prices::builtin().expect("prices");
        p.override_one("H100=4.5").expect("override");
        assert_eq!(p.usd_per_hour("h100-sxm"), Some(4.5));
        assert!(p.override_one("h100").is_err() && p.override_one("h100=-1").is_err());
    }
}
