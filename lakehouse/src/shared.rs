//! Repeated subplans computed once: a CTE that a query reads twice runs once and both readers
//! get its rows.
//!
//! DataFusion inlines a `WITH` table at every reference, so a CTE read twice is planned, and
//! run, twice. PostgreSQL (since 12) materializes a CTE referenced more than once; DuckDB does
//! too. [`ShareRepeatedSubplans`] finds physically identical subtrees and puts a [`SharedExec`]
//! over each copy; the copies share one computation per output partition.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr_common::physical_expr::is_volatile;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::execution_plan::PlanProperties;
use datafusion::physical_plan::joins::HashJoinExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    SendableRecordBatchStream, displayable,
};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, stream};

/// Shares subtrees that appear more than once in a physical plan.
///
/// A subtree is shared when it occurs at least twice (the same operators with the same
/// expressions, files and partitioning, as `EXPLAIN VERBOSE` shows them), does work worth
/// keeping (an aggregation or a join somewhere in it) and has no volatile expression (such as
/// `random()`, which must give each reference its own values). The largest such subtrees are
/// taken, top down.
///
/// It runs just before DataFusion's late filter pushdown, which adds the joins' dynamic filters
/// to scans. A [`SharedExec`] lets no filter from above through (each reader's filter would
/// change what the other reads), so both copies stay whole.
///
/// The price: each shared partition is held in memory (counted against the query's memory
/// limit) until the query ends, where the copies would have streamed. On the cohort query of
/// `benches/analyst_queries.rs` (the first order of each of 330k shoppers, read twice), ADR 0009
/// has the figures.
#[derive(Debug, Default)]
pub struct ShareRepeatedSubplans;

/// The operators that make a subtree worth computing once.
fn does_work(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| {
        Ok(node.downcast_ref::<AggregateExec>().is_some()
            || node.downcast_ref::<HashJoinExec>().is_some())
    })
    .unwrap_or(false)
}

fn has_volatile_expression(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.exists(|node| {
        let mut volatile = false;
        node.apply_expressions(&mut |expr| {
            volatile |= is_volatile(expr);
            Ok(if volatile {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })?;
        Ok(volatile)
    })
    .unwrap_or(true)
}

fn key(plan: &Arc<dyn ExecutionPlan>) -> String {
    displayable(plan.as_ref()).indent(true).to_string()
}

impl PhysicalOptimizerRule for ShareRepeatedSubplans {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if node.downcast_ref::<SharedExec>().is_some() {
                return Ok(TreeNodeRecursion::Jump);
            }
            if !node.children().is_empty() {
                *seen.entry(key(node)).or_default() += 1;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if seen.values().all(|&n| n < 2) {
            return Ok(plan);
        }
        let mut shared: HashMap<String, Arc<SharedState>> = HashMap::new();
        let plan = plan.transform_down(|node| {
            if node.downcast_ref::<SharedExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            if node.children().is_empty() {
                return Ok(Transformed::no(node));
            }
            let key = key(&node);
            let readers = seen.get(&key).copied().unwrap_or(0);
            if readers < 2 || !does_work(&node) || has_volatile_expression(&node) {
                return Ok(Transformed::no(node));
            }
            let partitions = node.output_partitioning().partition_count();
            let state = shared
                .entry(key)
                .or_insert_with(|| Arc::new(SharedState::new(partitions, readers)));
            let exec = SharedExec {
                input: node,
                state: Arc::clone(state),
                metrics: ExecutionPlanMetricsSet::new(),
            };
            Ok(Transformed::new(
                Arc::new(exec) as Arc<dyn ExecutionPlan>,
                true,
                TreeNodeRecursion::Jump,
            ))
        })?;
        Ok(plan.data)
    }

    fn name(&self) -> &str {
        "ShareRepeatedSubplans"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// One partition's rows, and the memory they are counted in.
struct Collected {
    batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

type Outcome = Result<Arc<Collected>, Arc<DataFusionError>>;

/// What the copies of one subtree share: per output partition, the computation that the first
/// reader starts. It runs in a task of its own, so it goes on whichever reader is waiting.
struct SharedState {
    partitions: Vec<Mutex<Option<Shared<BoxFuture<'static, Outcome>>>>>,
    readers: usize,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("partitions", &self.partitions.len())
            .field("readers", &self.readers)
            .finish()
    }
}

impl SharedState {
    fn new(partitions: usize, readers: usize) -> Self {
        Self {
            partitions: (0..partitions).map(|_| Mutex::new(None)).collect(),
            readers,
        }
    }

    /// The computation of `partition`, started by the first caller.
    fn partition(
        &self,
        partition: usize,
        input: &Arc<dyn ExecutionPlan>,
        context: &Arc<TaskContext>,
    ) -> Result<Shared<BoxFuture<'static, Outcome>>> {
        let slot = self.partitions.get(partition).ok_or_else(|| {
            DataFusionError::Internal(format!("SharedExec has no partition {partition}"))
        })?;
        let mut slot = slot
            .lock()
            .map_err(|_| DataFusionError::Internal("SharedExec: a reader panicked".into()))?;
        if let Some(running) = slot.as_ref() {
            return Ok(running.clone());
        }
        let input = Arc::clone(input);
        let context = Arc::clone(context);
        let future = async move {
            let task = SpawnedTask::spawn(collect(input, partition, context));
            match task.join().await {
                Ok(outcome) => outcome.map(Arc::new).map_err(Arc::new),
                Err(e) => Err(Arc::new(DataFusionError::External(Box::new(e)))),
            }
        }
        .boxed()
        .shared();
        *slot = Some(future.clone());
        Ok(future)
    }
}

async fn collect(
    input: Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<Collected> {
    let reservation =
        MemoryConsumer::new(format!("SharedExec[{partition}]")).register(context.memory_pool());
    let mut stream = input.execute(partition, context)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        reservation.try_grow(batch.get_array_memory_size())?;
        batches.push(batch);
    }
    Ok(Collected {
        batches,
        _reservation: reservation,
    })
}

/// One copy of a shared subtree: its rows come from the computation all copies share.
#[derive(Debug)]
pub struct SharedExec {
    input: Arc<dyn ExecutionPlan>,
    state: Arc<SharedState>,
    metrics: ExecutionPlanMetricsSet,
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "SharedExec: readers={}", self.state.readers)
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    /// The copies keep one computation: a later rule that rewrites a copy's subtree (the late
    /// filter pushdown, inside it) leaves what it produces unchanged.
    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return Err(DataFusionError::Internal("SharedExec has one child".into()));
        };
        Ok(Arc::new(Self {
            input,
            state: Arc::clone(&self.state),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let computed = self.state.partition(partition, &self.input, &context)?;
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let rows = stream::once(computed).flat_map(move |outcome| {
            let batches: Vec<Result<RecordBatch>> = match outcome {
                Ok(collected) => collected.batches.iter().cloned().map(Ok).collect(),
                Err(e) => vec![Err(DataFusionError::Shared(e))],
            };
            stream::iter(batches)
        });
        let rows = rows.map(move |batch| {
            if let Ok(batch) = &batch {
                metrics.record_output(batch.num_rows());
            }
            batch
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// `rules` with `rule` just before DataFusion's late filter pushdown (the pass that brings the
/// joins' dynamic filters down), or at the end if there is none.
pub fn insert_before_late_pushdown(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let at = rules
        .iter()
        .position(|rule| rule.name() == "FilterPushdown(Post)")
        .unwrap_or(rules.len());
    rules.insert(at, rule);
    rules
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    fn sessions() -> (SessionContext, SessionContext) {
        let config = SessionConfig::new().with_target_partitions(3);
        let plain = SessionContext::new_with_config(config.clone());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(insert_before_late_pushdown(
                PhysicalOptimizer::new().rules,
                Arc::new(ShareRepeatedSubplans),
            ))
            .build();
        (plain, SessionContext::new_with_state(state))
    }

    async fn rows(ctx: &SessionContext, sql: &str) -> Result<Vec<(i64, i64)>> {
        let mut out = Vec::new();
        for batch in ctx.sql(sql).await?.collect().await? {
            let a = batch.column(0).as_primitive::<Int64Type>();
            let b = batch.column(1).as_primitive::<Int64Type>();
            out.extend((0..batch.num_rows()).map(|i| (a.value(i), b.value(i))));
        }
        out.sort_unstable();
        Ok(out)
    }

    fn register(ctx: &SessionContext) -> Result<()> {
        let k: Int64Array = (0..5000i64).map(|i| (i * 7919) % 613).collect();
        let v: Int64Array = (0..5000i64).map(|i| (i * 104_729) % 997).collect();
        let batch = RecordBatch::try_from_iter([
            ("k", Arc::new(k) as Arc<dyn datafusion::arrow::array::Array>),
            ("v", Arc::new(v) as _),
        ])?;
        ctx.register_batch("t", batch)?;
        Ok(())
    }

    /// A CTE read twice: computed once (one `SharedExec` per reader over the same subtree) and
    /// the same answer as DataFusion's plan, which computes it twice.
    #[tokio::test]
    async fn a_cte_read_twice_is_computed_once_with_the_same_answer() -> Result<()> {
        let (plain, sharing) = sessions();
        register(&plain)?;
        register(&sharing)?;
        let sql = "WITH firsts AS (SELECT k, min(v) AS first FROM t GROUP BY k), \
                   later AS (SELECT DISTINCT f.k FROM firsts f JOIN t ON t.k = f.k \
                             WHERE t.v > f.first AND t.v <= f.first + 100) \
                   SELECT f.k, CASE WHEN l.k IS NULL THEN -f.first ELSE f.first END \
                   FROM firsts f LEFT JOIN later l ON l.k = f.k";
        let plan = sharing.sql(sql).await?.create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert_eq!(shown.matches("SharedExec: readers=2").count(), 2, "{shown}");
        let expected = rows(&plain, sql).await?;
        assert_eq!(expected.len(), 613);
        assert!(expected.iter().any(|(_, f)| *f < 0) && expected.iter().any(|(_, f)| *f > 0));
        assert_eq!(rows(&sharing, sql).await?, expected);
        Ok(())
    }

    /// `random()` gives each reference its own values: a subtree that draws it is not shared.
    #[tokio::test]
    async fn a_volatile_subtree_is_not_shared() -> Result<()> {
        let (_, sharing) = sessions();
        register(&sharing)?;
        let sql = "WITH r AS (SELECT k, max(v + CAST(random() * 10 AS BIGINT)) AS m FROM t GROUP BY k) \
                   SELECT a.k, a.m - b.m FROM r a JOIN r b ON a.k = b.k";
        let plan = sharing.sql(sql).await?.create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(!shown.contains("SharedExec"), "{shown}");
        Ok(())
    }

    /// An error in the shared subtree reaches every reader, and the query fails cleanly.
    #[tokio::test]
    async fn an_error_in_the_shared_subtree_fails_the_query() -> Result<()> {
        let (_, sharing) = sessions();
        register(&sharing)?;
        let sql = "WITH d AS (SELECT k, sum(v) / (min(v) - min(v)) AS x FROM t GROUP BY k) \
                   SELECT a.k, a.x FROM d a JOIN d b ON a.k = b.k";
        let result = sharing.sql(sql).await?.collect().await;
        let error = result.expect_err("division by zero");
        assert!(error.to_string().contains("Divide by zero"), "{error}");
        Ok(())
    }
}
