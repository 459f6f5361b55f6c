//! Row-count estimates where DataFusion 55 has none, so that its join planning puts the smaller
//! input on the build side of a hash join.
//!
//! DataFusion picks the build side of a hash join from the statistics of its inputs, and keeps
//! the order of the query when one side has none (`JoinSelection`). Two operators analysts use
//! all the time leave their output without a row count: `UnnestExec` (`unnest(skus)`,
//! `unnest(lines)`), and an `AggregateExec` whose `GROUP BY` columns have no distinct-count
//! statistic (anything over an unnest). A lookup table built as
//! `SELECT sku, min(category) FROM (SELECT unnest(skus) ...) GROUP BY sku` (200k rows) joined with
//! `cart_item_added` (1.4M rows) then hashes the 1.4M rows and probes with the 200k: 290 MB of
//! hash table instead of 30 MB (the funnel query of `benches/analyst_queries.rs`).
//!
//! [`registry`] is DataFusion's own chain of statistics providers with [`RowEstimates`] added
//! before its fallback. `RowEstimates` gives:
//! - an `UnnestExec` the row count of its input, as an estimate: a list of one element keeps
//!   it, longer lists add to it and empty ones take from it;
//! - an `AggregateExec` with a `GROUP BY`, when DataFusion has no estimate, the row count of its
//!   input times its grouping sets, inexact: an upper bound (one grouping never adds rows).
//!
//! The registry is used when `datafusion.optimizer.use_statistics_registry` is on (the
//! lakehouse's sessions turn it on). That also brings in DataFusion's other cross-operator
//! estimates (filter selectivity, join outputs from distinct counts), so join sides in a query
//! with several joins may be chosen differently from DataFusion's default: the five analyst
//! queries give the same answers either way and were timed with it. An estimate decides only
//! which side of a hash join is built and whether it is collected (under 131,072 estimated
//! rows, DataFusion's threshold), never a result: an unnest of long lists estimated too low is
//! built on one thread, not wrongly.

use std::sync::Arc;

use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::error::Result;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::operator_statistics::{
    ExtendedStatistics, StatisticsProvider, StatisticsRegistry, StatisticsResult,
};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::unnest::UnnestExec;

/// DataFusion's built-in statistics providers, with [`RowEstimates`] just before the last one,
/// the fallback to each operator's own statistics.
pub fn registry() -> StatisticsRegistry {
    let mut providers = StatisticsRegistry::default_with_builtin_providers()
        .providers()
        .to_vec();
    providers.insert(providers.len().saturating_sub(1), Arc::new(RowEstimates));
    StatisticsRegistry::with_providers(providers)
}

/// Row counts for unnests and groupings that DataFusion leaves without one (module docs).
#[derive(Debug, Default)]
pub struct RowEstimates;

impl StatisticsProvider for RowEstimates {
    fn compute_statistics(
        &self,
        plan: &dyn ExecutionPlan,
        child_stats: &[ExtendedStatistics],
    ) -> Result<StatisticsResult> {
        let [input] = child_stats else {
            return Ok(StatisticsResult::Delegate);
        };
        let Some(&input_rows) = input.base().num_rows.get_value() else {
            return Ok(StatisticsResult::Delegate);
        };
        let stats = if plan.downcast_ref::<UnnestExec>().is_some() {
            Statistics {
                num_rows: Precision::Inexact(input_rows),
                total_byte_size: Precision::Absent,
                column_statistics: Statistics::unknown_column(&plan.schema()),
            }
        } else if let Some(aggregate) = plan.downcast_ref::<AggregateExec>() {
            if aggregate.group_expr().expr().is_empty() {
                return Ok(StatisticsResult::Delegate);
            }
            // A grouping DataFusion can estimate (distinct counts known) keeps its own figure;
            // otherwise its statistics (column bounds included) with the row count filled in.
            let own = StatisticsContext::new().compute(plan, &StatisticsArgs::new())?;
            if own.num_rows.get_value().is_some() {
                return Ok(StatisticsResult::Delegate);
            }
            let sets = aggregate.group_expr().groups().len().max(1);
            let mut stats = Statistics::clone(&own);
            stats.num_rows = Precision::Inexact(input_rows.saturating_mul(sets));
            stats
        } else {
            return Ok(StatisticsResult::Delegate);
        };
        Ok(StatisticsResult::Computed(ExtendedStatistics::new(stats)))
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, ListArray, RecordBatch, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::datasource::MemTable;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::physical_plan::joins::HashJoinExec;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// A table with row-count statistics: `facts` (`n` rows of `key`, `v`), and `lists`
    /// (`n` rows of `id`, `keys`: one key each).
    fn context(
        registry: Option<StatisticsRegistry>,
        facts: usize,
        lists: usize,
    ) -> Result<SessionContext> {
        let mut config = SessionConfig::new().with_target_partitions(2);
        config.options_mut().optimizer.use_statistics_registry = registry.is_some();
        // Keep both joins partitioned: the build side is then the only thing statistics decide.
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold = 0;
        config
            .options_mut()
            .optimizer
            .hash_join_single_partition_threshold_rows = 0;
        let mut state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if let Some(registry) = registry {
            state = state.with_statistics_registry(registry);
        }
        let state = state.build();
        let ctx = SessionContext::new_with_state(state);
        let fact_schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let facts = RecordBatch::try_new(
            Arc::clone(&fact_schema),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..facts).map(|i| (i % lists).to_string()),
                )),
                Arc::new(Int64Array::from_iter_values((0..facts).map(|i| i as i64))),
            ],
        )?;
        let list_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new(
                "keys",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                false,
            ),
        ]));
        let keys = ListArray::from_iter_primitive::<Int64Type, _, _>(
            (0..lists).map(|i| Some(vec![Some(i as i64)])),
        );
        let keys = datafusion::arrow::compute::cast(
            &keys,
            &DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        )?;
        let lists = RecordBatch::try_new(
            Arc::clone(&list_schema),
            vec![
                Arc::new(Int64Array::from_iter_values(0..lists as i64)),
                keys,
            ],
        )?;
        ctx.register_table(
            "facts",
            Arc::new(MemTable::try_new(fact_schema, vec![vec![facts]])?),
        )?;
        ctx.register_table(
            "lists",
            Arc::new(MemTable::try_new(list_schema, vec![vec![lists]])?),
        )?;
        Ok(ctx)
    }

    const QUERY: &str = "WITH lookup AS ( \
            SELECT key, min(id) AS id FROM (SELECT unnest(keys) AS key, id FROM lists) s GROUP BY key \
        ) SELECT l.id, count(*) AS n, sum(f.v) AS total \
        FROM facts f JOIN lookup l ON f.key = l.key \
        GROUP BY l.id ORDER BY l.id";

    /// The row count of the build (left) side of the plan's one hash join.
    async fn build_rows(ctx: &SessionContext) -> Result<(usize, String)> {
        let plan = ctx.sql(QUERY).await?.create_physical_plan().await?;
        let mut found = None;
        plan.apply(|node| {
            if let Some(join) = node.downcast_ref::<HashJoinExec>() {
                found = Some(Arc::clone(join.left()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let left = found.expect("the query has a hash join");
        let batches = datafusion::physical_plan::collect(left, ctx.task_ctx()).await?;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        Ok((rows, displayable(plan.as_ref()).indent(false).to_string()))
    }

    /// With the estimates, the 300-row lookup built from an unnest is the build side of the join
    /// with 20,000 facts; without them (no registry, or DataFusion's own providers alone)
    /// DataFusion keeps the query's order and builds on the facts. The answers are the same
    /// either way, and those of a plain computation.
    #[tokio::test]
    async fn the_smaller_side_of_an_unnest_join_is_built() -> Result<()> {
        let with = context(Some(registry()), 20_000, 300)?;
        let without = context(None, 20_000, 300)?;
        let builtin = context(
            Some(StatisticsRegistry::default_with_builtin_providers()),
            20_000,
            300,
        )?;
        let (rows_with, plan_with) = build_rows(&with).await?;
        assert_eq!(rows_with, 300, "{plan_with}");
        let (rows_without, _) = build_rows(&without).await?;
        assert_eq!(rows_without, 20_000, "DataFusion alone builds on the facts");
        let (rows_builtin, _) = build_rows(&builtin).await?;
        assert_eq!(
            rows_builtin, 20_000,
            "DataFusion's own registry has no estimate for the unnest either"
        );

        let ours = with.sql(QUERY).await?.collect().await?;
        let theirs = without.sql(QUERY).await?.collect().await?;
        let shown = datafusion::arrow::util::pretty::pretty_format_batches;
        assert_eq!(shown(&ours)?.to_string(), shown(&theirs)?.to_string());
        // And the plain computation: key "i" is in the list of id i; fact j has key j % 300.
        let mut expected = vec![(0i64, 0i64); 300];
        for j in 0..20_000i64 {
            let id = (j % 300) as usize;
            expected[id].0 += 1;
            expected[id].1 += j;
        }
        let mut got = Vec::new();
        for batch in &ours {
            let n = batch.column(1).as_any().downcast_ref::<Int64Array>();
            let total = batch.column(2).as_any().downcast_ref::<Int64Array>();
            let (Some(n), Some(total)) = (n, total) else {
                panic!("count and sum are Int64");
            };
            for i in 0..batch.num_rows() {
                got.push((n.value(i), total.value(i)));
            }
        }
        assert_eq!(got, expected);
        Ok(())
    }
}
