//! Repeated subplans computed once: a CTE that a query reads twice runs once and both readers
//! get its rows.
//!
//! DataFusion inlines a `WITH` table at every reference, so a CTE read twice is planned, and
//! run, twice. PostgreSQL (since 12) materializes a CTE referenced more than once; DuckDB does
//! too. [`ShareRepeatedSubplans`] finds physically identical subtrees and puts a [`SharedExec`]
//! over each copy; the copies share one computation per output partition.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};

use datafusion::arrow::array::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::config::ConfigOptions;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
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

use crate::sorted_windows::only_child;

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

/// Whether every leaf of `plan` scans files. Only then does the plan's text name its data (the
/// files and byte ranges): an in-memory source shows only its sizes, so two different `VALUES`
/// lists would look the same.
fn reads_only_files(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !plan
        .exists(|node| {
            if !node.children().is_empty() {
                return Ok(false);
            }
            let scans_files = node.downcast_ref::<DataSourceExec>().is_some_and(|exec| {
                let source: &dyn Any = exec.data_source().as_ref();
                source.downcast_ref::<FileScanConfig>().is_some()
            });
            Ok(!scans_files)
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
        let eligible = |node: &Arc<dyn ExecutionPlan>, key: &str| {
            seen.get(key).copied().unwrap_or(0) >= 2
                && does_work(node)
                && reads_only_files(node)
                && !has_volatile_expression(node)
        };
        // The copies that will be shared, top down (the largest first; nothing inside one is
        // looked at). A subtree counted twice above may have one copy left outside a larger
        // shared one: it is not shared.
        let mut copies: HashMap<String, usize> = HashMap::new();
        plan.apply(|node| {
            if node.downcast_ref::<SharedExec>().is_some() || node.children().is_empty() {
                return Ok(TreeNodeRecursion::Continue);
            }
            let key = key(node);
            if eligible(node, &key) {
                *copies.entry(key).or_default() += 1;
                return Ok(TreeNodeRecursion::Jump);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut shared: HashMap<String, Arc<SharedState>> = HashMap::new();
        let plan = plan.transform_down(|node| {
            if node.downcast_ref::<SharedExec>().is_some() {
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
            }
            if node.children().is_empty() {
                return Ok(Transformed::no(node));
            }
            let key = key(&node);
            let readers = copies.get(&key).copied().unwrap_or(0);
            if !eligible(&node, &key) {
                return Ok(Transformed::no(node));
            }
            if readers < 2 {
                // Eligible but alone: left as it is, and (as above) not looked into.
                return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
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

/// What the copies of one subtree share: one of the copies (the first one executed) and, once
/// any reader polls, the computation of every one of its partitions. All partitions run
/// together, each in a task of its own, from that one copy: a copy's partitions may coordinate
/// (a file scan's partitions share out the files, a partitioned join waits for every
/// partition's build side), so they must not be split between copies, and none may be left
/// unstarted.
struct SharedState {
    partitions: usize,
    readers: usize,
    input: OnceLock<(Arc<dyn ExecutionPlan>, Arc<TaskContext>)>,
    running: Mutex<Option<Vec<Shared<BoxFuture<'static, Outcome>>>>>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("partitions", &self.partitions)
            .field("readers", &self.readers)
            .finish()
    }
}

impl SharedState {
    fn new(partitions: usize, readers: usize) -> Self {
        Self {
            partitions,
            readers,
            input: OnceLock::new(),
            running: Mutex::new(None),
        }
    }

    /// The computation of `partition`; the first call (from a reader's first poll) starts
    /// every partition's.
    fn partition(&self, partition: usize) -> Result<Shared<BoxFuture<'static, Outcome>>> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| DataFusionError::Internal("SharedExec: a reader panicked".into()))?;
        if running.is_none() {
            let (input, context) = self.input.get().ok_or_else(|| {
                DataFusionError::Internal("SharedExec polled before it was executed".into())
            })?;
            let all = (0..self.partitions)
                .map(|p| {
                    let task =
                        SpawnedTask::spawn(collect(Arc::clone(input), p, Arc::clone(context)));
                    async move {
                        match task.join().await {
                            Ok(outcome) => outcome.map(Arc::new).map_err(Arc::new),
                            Err(e) => Err(Arc::new(DataFusionError::External(Box::new(e)))),
                        }
                    }
                    .boxed()
                    .shared()
                })
                .collect();
            *running = Some(all);
        }
        running
            .as_ref()
            .and_then(|all| all.get(partition))
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Internal(format!("SharedExec has no partition {partition}"))
            })
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
    // An aggregation's batches are slices of one buffer: each buffer is counted once.
    let mut counter = RecordBatchMemoryCounter::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        reservation.try_grow(counter.count_batch(&batch))?;
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
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self {
            input: only_child(children, "SharedExec")?,
            state: Arc::clone(&self.state),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // The first copy executed is the one that runs; the others only read.
        let _ = self
            .state
            .input
            .set((Arc::clone(&self.input), Arc::clone(&context)));
        let state = Arc::clone(&self.state);
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let computed = async move {
            match state.partition(partition) {
                Ok(running) => running.await,
                Err(e) => Err(Arc::new(e)),
            }
        };
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

/// The name of DataFusion's late filter pushdown (the pass that brings the joins' dynamic filters
/// down).
pub const LATE_PUSHDOWN: &str = "FilterPushdown(Post)";

/// `rules` with `rule` just before DataFusion's late filter pushdown.
pub fn insert_before_late_pushdown(
    mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
) -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    // Anywhere else the rules would be wrong (after it, copies with different dynamic filters
    // look the same), so without it they are left out.
    match rules.iter().position(|rule| rule.name() == LATE_PUSHDOWN) {
        Some(at) => rules.insert(at, rule),
        None => tracing::warn!(
            rule = rule.name(),
            "DataFusion has no {LATE_PUSHDOWN} rule: not added"
        ),
    }
    rules
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

    use super::*;

    fn tempdir() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| DataFusionError::External(Box::new(e)))
    }

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

    /// Table `t` (k, v), 5000 rows in three Parquet files (three scan partitions), registered
    /// in both sessions.
    async fn register(dir: &std::path::Path, contexts: &[&SessionContext]) -> Result<()> {
        let k: Int64Array = (0..5000i64).map(|i| (i * 7919) % 613).collect();
        let v: Int64Array = (0..5000i64).map(|i| (i * 104_729) % 997).collect();
        let batch = RecordBatch::try_from_iter([
            ("k", Arc::new(k) as Arc<dyn datafusion::arrow::array::Array>),
            ("v", Arc::new(v) as _),
        ])?;
        let writer = SessionContext::new();
        for part in 0..3 {
            let rows = batch.slice(part * 1700, (5000 - part * 1700).min(1700));
            writer.register_batch("src", rows)?;
            let path = dir.join(format!("part-{part}.parquet"));
            writer
                .sql(&format!(
                    "COPY (SELECT * FROM src) TO '{}' STORED AS PARQUET",
                    path.display()
                ))
                .await?
                .collect()
                .await?;
            writer.deregister_table("src")?;
        }
        for ctx in contexts {
            ctx.register_parquet(
                "t",
                &format!("{}/", dir.display()),
                ParquetReadOptions::default(),
            )
            .await?;
        }
        Ok(())
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

    /// Runs `sql` in `ctx` (within 60 s: a hang fails) and counts the rows its scans read.
    async fn scanned(ctx: &SessionContext, sql: &str) -> Result<(usize, String)> {
        let plan = ctx.sql(sql).await?.create_physical_plan().await?;
        let run = collect(Arc::clone(&plan), ctx.task_ctx());
        tokio::time::timeout(Duration::from_secs(60), run)
            .await
            .map_err(|_| DataFusionError::Execution("the query hung".into()))??;
        let mut read = 0;
        plan.apply(|node| {
            if node.downcast_ref::<DataSourceExec>().is_some() {
                read += node.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok((read, displayable(plan.as_ref()).indent(false).to_string()))
    }

    const TWICE: &str = "WITH firsts AS (SELECT k, min(v) AS first FROM t GROUP BY k), \
        later AS (SELECT DISTINCT f.k FROM firsts f JOIN t ON t.k = f.k \
                  WHERE t.v > f.first AND t.v <= f.first + 100) \
        SELECT f.k, CASE WHEN l.k IS NULL THEN -f.first ELSE f.first END \
        FROM firsts f LEFT JOIN later l ON l.k = f.k";

    /// A CTE read twice: computed once (its scan reads the table once, where DataFusion's plan
    /// reads it twice) with the same answer.
    #[tokio::test]
    async fn a_cte_read_twice_is_computed_once_with_the_same_answer() -> Result<()> {
        let dir = tempdir()?;
        let (plain, sharing) = sessions();
        register(dir.path(), &[&plain, &sharing]).await?;
        let (plain_read, _) = scanned(&plain, TWICE).await?;
        let (shared_read, shown) = scanned(&sharing, TWICE).await?;
        assert_eq!(shown.matches("SharedExec: readers=2").count(), 2, "{shown}");
        // `firsts` twice and `t` in `later`, against `firsts` once and `t`.
        assert_eq!(plain_read, 15_000);
        assert_eq!(shared_read, 10_000, "{shown}");
        let expected = rows(&plain, TWICE).await?;
        assert_eq!(expected.len(), 613);
        assert!(expected.iter().any(|(_, f)| *f < 0) && expected.iter().any(|(_, f)| *f > 0));
        assert_eq!(rows(&sharing, TWICE).await?, expected);
        Ok(())
    }

    /// A shared subtree with a partitioned hash join inside (whose dynamic filter waits for
    /// every partition of its build side): it runs to the end, with DataFusion's answer.
    #[tokio::test]
    async fn a_shared_join_completes_with_the_same_answer() -> Result<()> {
        let dir = tempdir()?;
        let (plain, sharing) = sessions();
        register(dir.path(), &[&plain, &sharing]).await?;
        let sql = "WITH j AS (SELECT a.k, count(*) AS c FROM t a JOIN t b ON a.k = b.k \
                   WHERE b.v < 500 GROUP BY a.k) \
                   SELECT x.k, x.c + y.c FROM j x JOIN j y ON x.k = y.k";
        let (_, shown) = scanned(&sharing, sql).await?;
        assert!(shown.contains("SharedExec"), "{shown}");
        assert_eq!(rows(&sharing, sql).await?, rows(&plain, sql).await?);
        Ok(())
    }

    /// In-memory sources show only their sizes: two different `VALUES` lists are not taken for
    /// one subtree.
    #[tokio::test]
    async fn values_are_never_shared() -> Result<()> {
        let (_, sharing) = sessions();
        let sql = "WITH a AS (SELECT x, count(*) AS c FROM (VALUES (1), (2)) t(x) GROUP BY x), \
                   b AS (SELECT x, count(*) AS c FROM (VALUES (3), (4)) t(x) GROUP BY x) \
                   SELECT * FROM a UNION ALL SELECT * FROM b";
        assert_eq!(
            rows(&sharing, sql).await?,
            vec![(1, 1), (2, 1), (3, 1), (4, 1)]
        );
        Ok(())
    }

    /// `random()` gives each reference its own values: a subtree that draws it is not shared
    /// (the same query without it is).
    #[tokio::test]
    async fn a_volatile_subtree_is_not_shared() -> Result<()> {
        let dir = tempdir()?;
        let (_, sharing) = sessions();
        register(dir.path(), &[&sharing]).await?;
        let shown = |sql: &'static str| {
            let sharing = sharing.clone();
            async move {
                let plan = sharing.sql(sql).await?.create_physical_plan().await?;
                Ok::<_, DataFusionError>(displayable(plan.as_ref()).indent(false).to_string())
            }
        };
        let volatile = shown(
            "WITH r AS (SELECT k, max(v + CAST(random() * 10 AS BIGINT)) AS m FROM t GROUP BY k) \
             SELECT a.k, a.m - b.m FROM r a JOIN r b ON a.k = b.k",
        )
        .await?;
        assert!(!volatile.contains("SharedExec"), "{volatile}");
        let stable = shown(
            "WITH r AS (SELECT k, max(v + 10) AS m FROM t GROUP BY k) \
             SELECT a.k, a.m - b.m FROM r a JOIN r b ON a.k = b.k",
        )
        .await?;
        assert!(stable.contains("SharedExec"), "{stable}");
        Ok(())
    }

    /// An error in the shared subtree reaches every reader, and the query fails cleanly.
    #[tokio::test]
    async fn an_error_in_the_shared_subtree_fails_the_query() -> Result<()> {
        let dir = tempdir()?;
        let (_, sharing) = sessions();
        register(dir.path(), &[&sharing]).await?;
        let sql = "WITH d AS (SELECT k, sum(v) / (min(v) - min(v)) AS x FROM t GROUP BY k) \
                   SELECT a.k, a.x + b.x FROM d a JOIN d b ON a.k = b.k";
        let plan = sharing.sql(sql).await?.create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(shown.contains("SharedExec"), "{shown}");
        let result = collect(plan, sharing.task_ctx()).await;
        let error = result.expect_err("division by zero");
        assert!(error.to_string().contains("Divide by zero"), "{error}");
        Ok(())
    }

    /// The rules go before DataFusion's late filter pushdown: a rename in a DataFusion upgrade
    /// fails here, not silently.
    #[test]
    fn datafusion_has_the_late_pushdown_rule() {
        let rules = PhysicalOptimizer::new().rules;
        assert!(rules.iter().any(|rule| rule.name() == LATE_PUSHDOWN));
        let with = insert_before_late_pushdown(rules.clone(), Arc::new(ShareRepeatedSubplans));
        assert_eq!(with.len(), rules.len() + 1);
    }
}
