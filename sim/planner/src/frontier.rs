//! The cost-vs-goodput frontier as an SVG.
