//! What the lakehouse adds to DataFusion's planner, each part named for what it does, and the
//! one place that puts them in a session ([`add_rules`]).
//!
//! - [`shared_subplans`]: a subplan a query repeats (a CTE read twice) computed once;
//! - [`sorted_windows`]: window functions over sorted input in one pass;
//! - [`unnest_filter`]: the joins' dynamic filters applied above an unnest;
//! - [`row_estimates`]: row counts for unnests and groupings, so joins build on their smaller
//!   side.
//!
//! None of them may change an answer, only how it is computed. The SQL corpus
//! (`tests/sql_corpus/*.slt`, run by `tests/sql_corpus.rs`) checks that on every query it holds:
//! the same answers with [`Rules::Lakehouse`], with [`Rules::DataFusion`] and from DuckDB.

pub mod row_estimates;
pub mod shared_subplans;
pub mod sorted_windows;
pub mod unnest_filter;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::error::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;

use shared_subplans::{SharedSubplanPlanner, mark_repeated_subplans};
use sorted_windows::{SortedWindows, needs_datafusion_windows};
use unnest_filter::FilterAboveUnnest;

/// Which planner a session uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rules {
    /// DataFusion's, with the lakehouse's rules added (what `emporium sql` and `POST /v1/sql`
    /// use).
    #[default]
    Lakehouse,
    /// DataFusion's alone: the reference the corpus compares the rules with, and a way to tell
    /// whether a rule is behind a surprising answer.
    DataFusion,
}

/// `builder` and `config` with the rules of `rules`. `config` must go into `builder` after
/// this (the statistics registry is switched on in it).
pub fn add_rules(
    builder: SessionStateBuilder,
    config: &mut SessionConfig,
    rules: Rules,
) -> SessionStateBuilder {
    match rules {
        Rules::DataFusion => builder,
        Rules::Lakehouse => {
            // Row estimates for unnests and groupings (`row_estimates.rs`).
            config.options_mut().optimizer.use_statistics_registry = true;
            // The joins' dynamic filters reach the rows an unnest makes (`unnest_filter.rs`).
            let rules = insert_before_late_pushdown(
                PhysicalOptimizer::new().rules,
                Arc::new(FilterAboveUnnest),
            );
            // Windows over sorted input in one pass (`sorted_windows.rs`), checked by
            // DataFusion's `SanityCheckPlan` like every other rule's output.
            let rules = insert_before(rules, SANITY_CHECK, Arc::new(SortedWindows));
            builder
                // A subplan read twice runs once (`shared_subplans.rs`).
                .with_query_planner(Arc::new(LakehouseQueryPlanner))
                .with_physical_optimizer_rules(rules)
                .with_statistics_registry(row_estimates::registry())
        }
    }
}

/// DataFusion's query planner, with the lakehouse's steps around it:
/// - the subplans a query repeats are marked ([`mark_repeated_subplans`]) and each is planned
///   once ([`SharedSubplanPlanner`]);
/// - a query with a window function [`SortedWindows`] must not compute
///   ([`needs_datafusion_windows`]) is planned without that rule.
#[derive(Debug, Default)]
pub struct LakehouseQueryPlanner;

#[async_trait]
impl QueryPlanner for LakehouseQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let marked = mark_repeated_subplans(logical_plan)?;
        let planner =
            DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SharedSubplanPlanner)]);
        let state = session.as_any().downcast_ref::<SessionState>();
        match state {
            Some(state) if needs_datafusion_windows(logical_plan) => {
                let rules = state
                    .physical_optimizers()
                    .iter()
                    .filter(|rule| rule.name() != SortedWindows.name())
                    .cloned()
                    .collect();
                let without = SessionStateBuilder::new_from_existing(state.clone())
                    .with_physical_optimizer_rules(rules)
                    .build();
                planner.create_physical_plan(&marked, &without).await
            }
            _ => planner.create_physical_plan(&marked, session).await,
        }
    }
}

/// The name of DataFusion's late filter pushdown (the pass that brings the joins' dynamic filters
/// down).
pub const LATE_PUSHDOWN: &str = "FilterPushdown(Post)";

/// The name of DataFusion's last rule, the check that the plan meets every operator's
/// requirements.
pub const SANITY_CHECK: &str = "SanityCheckPlan";

/// `rules` with `rule` just before DataFusion's late filter pushdown.
pub fn insert_before_late_pushdown(
    rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    insert_before(rules, LATE_PUSHDOWN, rule)
}

/// `rules` with `rule` just before DataFusion's rule `before`.
fn insert_before(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    before: &str,
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    // Anywhere else the rule would be wrong (after the late pushdown, no dynamic filter reaches
    // the rule's node; after the sanity check, a wrong plan would run), so without the rule it
    // goes before, it is left out.
    match rules.iter().position(|r| r.name() == before) {
        Some(at) => rules.insert(at, rule),
        None => tracing::warn!(
            rule = rule.name(),
            "DataFusion has no {before} rule: not added"
        ),
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules go before DataFusion's late filter pushdown and its sanity check: a rename in
    /// a DataFusion upgrade fails here, not silently.
    #[test]
    fn datafusion_has_the_rules_ours_go_before() {
        let rules = PhysicalOptimizer::new().rules;
        for name in [LATE_PUSHDOWN, SANITY_CHECK] {
            assert!(rules.iter().any(|rule| rule.name() == name), "{name}");
        }
        assert_eq!(
            rules.last().map(|r| r.name().to_owned()).as_deref(),
            Some(SANITY_CHECK)
        );
        let with = insert_before_late_pushdown(rules.clone(), Arc::new(FilterAboveUnnest));
        assert_eq!(with.len(), rules.len() + 1);
        let with = insert_before(with, SANITY_CHECK, Arc::new(SortedWindows));
        assert_eq!(with.len(), rules.len() + 2);
        assert_eq!(with[with.len() - 2].name(), SortedWindows.name());
    }
}
