//! Cost of a request from the model price table in `data/prices.json` (LiteLLM's format and
//! data, USD per token). A target missing from the table is counted by tokens and flagged
//! (`price_known = false`, a metric and a warning), never silently treated as free for
//! budgets: its cost is charged at the most expensive known rates.

use std::collections::HashMap;

use outlast_core::Usage;
use serde::Deserialize;

const PRICES: &str = include_str!("../../data/prices.json");

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub(crate) struct Price {
    #[serde(default)]
    pub input_cost_per_token: f64,
    #[serde(default)]
    pub output_cost_per_token: f64,
    #[serde(default)]
    pub cache_read_input_token_cost: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct Prices {
    table: HashMap<String, Price>,
    /// The highest known rates, charged for unknown models against budgets.
    ceiling: Price,
}

/// What one request cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Cost {
    pub usd: f64,
    pub known: bool,
}

impl Prices {
    pub(crate) fn bundled() -> Self {
        let raw: HashMap<String, serde_json::Value> =
            serde_json::from_str(PRICES).unwrap_or_default();
        let table: HashMap<String, Price> = raw
            .into_iter()
            .filter_map(|(k, v)| Some((k, serde_json::from_value::<Price>(v).ok()?)))
            .collect();
        let ceiling = table.values().fold(
            Price {
                input_cost_per_token: 0.0,
                output_cost_per_token: 0.0,
                cache_read_input_token_cost: None,
            },
            |c, p| Price {
                input_cost_per_token: c.input_cost_per_token.max(p.input_cost_per_token),
                output_cost_per_token: c.output_cost_per_token.max(p.output_cost_per_token),
                cache_read_input_token_cost: None,
            },
        );
        Self { table, ceiling }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The price of `model` as served by `provider`: `provider/model`, then `model`.
    pub(crate) fn find(&self, provider: &str, model: &str) -> Option<Price> {
        self.table
            .get(&format!("{provider}/{model}"))
            .or_else(|| self.table.get(model))
            .copied()
    }

    pub(crate) fn cost(&self, provider: &str, model: &str, usage: &Usage) -> Cost {
        let (price, known) = match self.find(provider, model) {
            Some(p) => (p, true),
            None => (self.ceiling, false),
        };
        let cached = usage
            .prompt_tokens_details
            .map_or(0, |d| d.cached_tokens)
            .min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let read = price
            .cache_read_input_token_cost
            .unwrap_or(price.input_cost_per_token);
        let usd = uncached as f64 * price.input_cost_per_token
            + cached as f64 * read
            + usage.completion_tokens as f64 * price.output_cost_per_token;
        Cost { usd, known }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use outlast_core::usage::PromptTokensDetails;

    #[test]
    fn bundled_table_prices_known_models() {
        let p = Prices::bundled();
        assert!(p.len() >= 10);
        let c = p.cost("openai", "gpt-4o-mini", &Usage::new(1_000_000, 1_000_000));
        assert!(c.known);
        assert!((c.usd - 0.75).abs() < 1e-9, "{}", c.usd);
        let g = p.cost("gemini", "gemini-2.0-flash", &Usage::new(1_000_000, 0));
        assert!(g.known && (g.usd - 0.1).abs() < 1e-9);
    }

    #[test]
    fn cached_tokens_are_a_subset_billed_at_the_read_rate() {
        let p = Prices::bundled();
        let mut u = Usage::new(1_000_000, 0);
        u.prompt_tokens_details = Some(PromptTokensDetails {
            cached_tokens: 500_000,
        });
        let c = p.cost("openai", "gpt-4o", &u);
        assert!((c.usd - (1.25 + 0.625)).abs() < 1e-9, "{}", c.usd);
    }

    #[test]
    fn unknown_models_are_flagged_and_never_free() {
        let p = Prices::bundled();
        let c = p.cost("x", "no-such-model", &Usage::new(100, 100));
        assert!(!c.known);
        assert!(c.usd > 0.0);
    }
}
