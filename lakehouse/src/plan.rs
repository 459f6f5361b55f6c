//! Physical plan rules the lakehouse's SQL sessions add to DataFusion's.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::InputOrderMode;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec};

/// Runs window functions over input sorted by their `PARTITION BY` keys with [`WindowAggExec`],
/// which evaluates each window partition as one slice of the sorted input, instead of
/// [`BoundedWindowAggExec`], whose per-batch work grows with the number of window partitions
/// still held (DataFusion 55; apache/datafusion#23982). Analysts' windows are mostly of that kind:
/// a running sum per (sku, warehouse) has hundreds of thousands of partitions of a few rows. On
/// the stock-out query of `benches/analyst_queries.rs` (1.1M ledger rows, ~750k partitions) the
/// query took a median 1.58 s and 1.69 s with this rule against 2.73 s and 2.63 s without it. The input is sorted, and so held, either way;
/// the bounded operator stays where it streams: no `PARTITION BY`, or an input not sorted by it.
#[derive(Debug, Default)]
pub struct SortedWindows;

impl PhysicalOptimizerRule for SortedWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(window) = node.downcast_ref::<BoundedWindowAggExec>() else {
                return Ok(Transformed::no(node));
            };
            let partitioned = window
                .window_expr()
                .first()
                .is_some_and(|e| !e.partition_by().is_empty());
            if window.input_order_mode != InputOrderMode::Sorted || !partitioned {
                return Ok(Transformed::no(node));
            }
            let replaced = WindowAggExec::try_new(
                window.window_expr().to_vec(),
                Arc::clone(window.input()),
                !window.partition_keys().is_empty(),
            )?;
            Ok(Transformed::yes(
                Arc::new(replaced) as Arc<dyn ExecutionPlan>
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "emporium_sorted_windows"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// Running sums and `lead` over many small partitions: the plan uses `WindowAggExec`, and
    /// every value equals a plain computation over the same rows.
    #[tokio::test]
    async fn windows_over_many_partitions_run_sorted_and_answer_the_same() -> Result<()> {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(SortedWindows))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let sql = "SELECT k, v, \
                   sum(v) OVER (PARTITION BY k ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running, \
                   lead(v) OVER (PARTITION BY k ORDER BY v) AS next \
                   FROM (SELECT (value * 7919) % 997 AS k, (value * 104729) % 5003 AS v FROM generate_series(1, 20000)) t \
                   ORDER BY k, v";
        let frame = ctx.sql(sql).await?;
        let plan = frame.clone().create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(shown.contains("WindowAggExec"), "{shown}");
        assert!(!shown.contains("BoundedWindowAggExec"), "{shown}");

        let mut rows: Vec<(i64, i64)> = (1..=20000i64)
            .map(|x| ((x * 7919) % 997, (x * 104729) % 5003))
            .collect();
        rows.sort();
        let mut expected = Vec::new();
        let mut running = 0;
        for (i, &(k, v)) in rows.iter().enumerate() {
            if i == 0 || rows[i - 1].0 != k {
                running = 0;
            }
            running += v;
            let next = rows.get(i + 1).filter(|(kk, _)| *kk == k).map(|r| r.1);
            expected.push((k, v, running, next));
        }
        let mut got = Vec::new();
        for batch in frame.collect().await? {
            let col = |i: usize| batch.column(i).as_primitive::<Int64Type>().clone();
            let (k, v, running, next) = (col(0), col(1), col(2), col(3));
            for r in 0..batch.num_rows() {
                let next = (!next.is_null(r)).then(|| next.value(r));
                got.push((k.value(r), v.value(r), running.value(r), next));
            }
        }
        assert_eq!(got, expected);
        Ok(())
    }
}
