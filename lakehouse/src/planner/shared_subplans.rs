//! Repeated subplans computed once: a CTE that a query reads twice runs once and both readers
//! get its rows.
//!
//! DataFusion inlines a `WITH` table at every reference, so a CTE read twice is planned, and
//! run, twice. PostgreSQL (since 12) materializes a CTE referenced more than once; DuckDB does
//! too. [`mark_repeated_subplans`] finds the subtrees of the optimized logical plan that occur more
//! than once (structurally: DataFusion's logical plans compare and hash by their whole content,
//! operators, expressions, tables, limits), marks each copy with a [`SharedSubplan`] node, and
//! plans each marked subtree once: every copy becomes a [`SharedExec`] that reads the same
//! computation.
//!
//! A shared subtree is planned and optimized on its own, and the plan around it sees a
//! [`SharedExec`] as a leaf: no rule of the outer plan reaches into it, so no copy can be
//! rewritten differently from the others (a sort or a filter pushed into one copy only, which is
//! why the check cannot be left to each copy's physical plan), and no filter of one reader
//! reaches what the others read.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::utils::memory::RecordBatchMemoryCounter;
use datafusion::common::{DFSchemaRef, Statistics, internal_err};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::PlanProperties;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    SendableRecordBatchStream, displayable,
};
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use futures::future::{BoxFuture, FutureExt, Shared};
use futures::{StreamExt, stream};

/// The operators that make a subtree worth computing once.
fn does_work(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(matches!(
            node,
            LogicalPlan::Aggregate(_) | LogicalPlan::Join(_) | LogicalPlan::Window(_)
        ))
    })
    .unwrap_or(false)
}

/// Whether `plan` gives the same rows wherever it is read: no volatile expression, no outer
/// reference, no recursive query (whose work table belongs to one place), nothing unknown.
fn same_everywhere(plan: &LogicalPlan) -> bool {
    !plan
        .exists(|node| {
            if matches!(
                node,
                LogicalPlan::RecursiveQuery(_)
                    | LogicalPlan::Extension(_)
                    | LogicalPlan::Subquery(_)
            ) {
                return Ok(true);
            }
            let mut varies = false;
            node.apply_expressions(|expr| {
                varies |= expr.is_volatile() || expr.contains_outer();
                Ok(if varies {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            })?;
            Ok(varies)
        })
        .unwrap_or(true)
}

/// `plan` with every copy of a subtree it repeats under a [`SharedSubplan`] node; the copies of
/// one subtree share one. Run on the optimized logical plan, just before physical planning
/// (`LakehouseQueryPlanner`); [`SharedSubplanPlanner`] then plans the marked subtrees.
///
/// A subtree is shared when it occurs at least twice, does work worth keeping (an aggregation,
/// a join or a window somewhere in it), has no volatile expression (such as `random()`, which
/// must give each reference its own values, as in DataFusion's own plan) and nothing that
/// depends on where it is (an outer reference, a recursive query's work table). The largest
/// such subtrees are taken, top down.
///
/// The price: each shared partition is held in memory (counted against the query's memory
/// limit) until the query ends, where the copies would have streamed. On the cohort query of
/// `benches/analyst_queries.rs` (the first order of each of 330k shoppers, read twice), ADR 0009
/// has the figures.
pub fn mark_repeated_subplans(plan: &LogicalPlan) -> Result<LogicalPlan> {
    // How often each subtree occurs; logical plans compare by their whole content.
    let mut seen: HashMap<&LogicalPlan, usize> = HashMap::new();
    plan.apply(|node| {
        if !node.inputs().is_empty() {
            *seen.entry(node).or_default() += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    if seen.values().all(|&n| n < 2) {
        return Ok(plan.clone());
    }
    let eligible = |node: &LogicalPlan| {
        seen.get(node).copied().unwrap_or(0) >= 2 && does_work(node) && same_everywhere(node)
    };
    // The copies that will be shared, top down (the largest first; nothing inside one is looked
    // at). A subtree counted twice above may have one copy left outside a larger shared one: it
    // is not shared.
    let mut copies: HashMap<&LogicalPlan, usize> = HashMap::new();
    plan.apply(|node| {
        if node.inputs().is_empty() || !eligible(node) {
            return Ok(TreeNodeRecursion::Continue);
        }
        *copies.entry(node).or_default() += 1;
        Ok(TreeNodeRecursion::Jump)
    })?;
    if copies.values().all(|&n| n < 2) {
        return Ok(plan.clone());
    }
    // The same walk again: it meets every subtree counted above (and equal subtrees are equally
    // eligible), and nothing inside one.
    let mut shared: HashMap<&LogicalPlan, Arc<SharedSubplan>> = HashMap::new();
    let marked = plan.clone().transform_down(|node| {
        let Some((&key, &readers)) = copies.get_key_value(&node) else {
            return Ok(Transformed::no(node));
        };
        if readers < 2 {
            // Eligible but alone: left as it is, and (as above) not looked into.
            return Ok(Transformed::new(node, false, TreeNodeRecursion::Jump));
        }
        let id = shared.len();
        let subplan = shared.entry(key).or_insert_with(|| {
            Arc::new(SharedSubplan {
                id,
                readers,
                input: node,
                planned: Arc::new(Mutex::new(None)),
            })
        });
        let marked = LogicalPlan::Extension(Extension {
            node: Arc::clone(subplan) as Arc<dyn UserDefinedLogicalNode>,
        });
        Ok(Transformed::new(marked, true, TreeNodeRecursion::Jump))
    })?;
    Ok(marked.data)
}

/// A subtree a plan repeats, at one of its copies. All copies are the same node: the same
/// `id`, and one plan once the first is planned.
#[derive(Debug)]
pub struct SharedSubplan {
    id: usize,
    readers: usize,
    input: LogicalPlan,
    planned: Arc<Mutex<Option<Arc<SharedState>>>>,
}

impl PartialEq for SharedSubplan {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id && Arc::ptr_eq(&self.planned, &other.planned)
    }
}

impl Eq for SharedSubplan {}

impl Hash for SharedSubplan {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialOrd for SharedSubplan {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        (self == other).then_some(Ordering::Equal)
    }
}

impl UserDefinedLogicalNodeCore for SharedSubplan {
    fn name(&self) -> &str {
        "SharedSubplan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        self.input.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    /// Marking comes after the logical optimizer, but should a rule ever run later: no
    /// predicate goes into one copy (DataFusion's default too, said here).
    fn prevent_predicate_push_down_columns(&self) -> std::collections::HashSet<String> {
        self.input
            .schema()
            .columns()
            .into_iter()
            .map(|c| c.flat_name())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SharedSubplan: subplan={}, readers={}",
            self.id, self.readers
        )
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        let [input]: [LogicalPlan; 1] = inputs
            .try_into()
            .map_err(|_| DataFusionError::Internal("SharedSubplan takes one input".to_owned()))?;
        Ok(Self {
            id: self.id,
            readers: self.readers,
            input,
            planned: Arc::clone(&self.planned),
        })
    }
}

/// Plans a [`SharedSubplan`]: the first copy planned optimizes its physical plan (with the
/// session's rules, as a query of its own) and every copy reads it.
#[derive(Debug, Default)]
pub struct SharedSubplanPlanner;

#[async_trait]
impl ExtensionPlanner for SharedSubplanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let Some(subplan) = node.as_any().downcast_ref::<SharedSubplan>() else {
            return Ok(None);
        };
        let [input] = physical_inputs else {
            return internal_err!("SharedSubplan has one input");
        };
        let mut planned = subplan
            .planned
            .lock()
            .map_err(|_| DataFusionError::Internal("SharedSubplan: planning panicked".into()))?;
        let state = match planned.as_ref() {
            Some(state) => Arc::clone(state),
            None => {
                let optimized = DefaultPhysicalPlanner::default().optimize_physical_plan(
                    Arc::clone(input),
                    session,
                    |_, _| {},
                )?;
                let state = Arc::new(SharedState::new(subplan.id, optimized, subplan.readers));
                *planned = Some(Arc::clone(&state));
                state
            }
        };
        Ok(Some(Arc::new(SharedExec {
            state,
            metrics: ExecutionPlanMetricsSet::new(),
        })))
    }
}

/// One partition's rows, and the memory they are counted in.
struct Collected {
    batches: Vec<RecordBatch>,
    _reservation: MemoryReservation,
}

type Outcome = Result<Arc<Collected>, Arc<DataFusionError>>;

/// What the copies of one subtree share: its one physical plan and, once any reader polls, the
/// computation of every one of its partitions. All partitions run together, each in a task of
/// its own: a plan's partitions may coordinate (a file scan's partitions share out the files, a
/// partitioned join waits for every partition's build side), so none may be left unstarted.
struct SharedState {
    id: usize,
    input: Arc<dyn ExecutionPlan>,
    partitions: usize,
    readers: usize,
    context: OnceLock<Arc<TaskContext>>,
    running: Mutex<Option<Vec<Shared<BoxFuture<'static, Outcome>>>>>,
}

impl fmt::Debug for SharedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedState")
            .field("id", &self.id)
            .field("partitions", &self.partitions)
            .field("readers", &self.readers)
            .finish()
    }
}

impl SharedState {
    fn new(id: usize, input: Arc<dyn ExecutionPlan>, readers: usize) -> Self {
        Self {
            id,
            partitions: input.output_partitioning().partition_count(),
            input,
            readers,
            context: OnceLock::new(),
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
            let context = self.context.get().ok_or_else(|| {
                DataFusionError::Internal("SharedExec polled before it was executed".into())
            })?;
            let all = (0..self.partitions)
                .map(|p| {
                    let task = SpawnedTask::spawn(collect(
                        Arc::clone(&self.input),
                        p,
                        Arc::clone(context),
                    ));
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

/// One copy of a shared subtree: its rows come from the computation all copies share. To the
/// plan around it, a leaf.
#[derive(Debug)]
pub struct SharedExec {
    state: Arc<SharedState>,
    metrics: ExecutionPlanMetricsSet,
}

impl SharedExec {
    /// The plan every copy reads.
    pub fn subplan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.state.input
    }
}

impl DisplayAs for SharedExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let state = &self.state;
        write!(
            f,
            "SharedExec: subplan={}, readers={}",
            state.id, state.readers
        )?;
        // The shared plan, on one line, so that EXPLAIN shows what each copy reads.
        if !matches!(t, DisplayFormatType::TreeRender) {
            let shown = displayable(state.input.as_ref()).indent(false).to_string();
            let steps: Vec<&str> = shown.lines().map(str::trim).collect();
            write!(f, ", computes=[{}]", steps.join(" <- "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for SharedExec {
    fn name(&self) -> &str {
        "SharedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.state.input.properties()
    }

    /// None: the shared plan is optimized once, on its own, and no rule of the plan around it
    /// may rewrite one copy.
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("SharedExec has no children")
        }
    }

    /// The shared plan's, so that join planning sees its size.
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        StatisticsContext::new().compute(self.state.input.as_ref(), args)
    }

    /// No filter from above goes in: each reader's filter would change what the others read.
    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        Ok(FilterDescription::all_unsupported(&parent_filters, &[]))
    }

    /// ... and none is taken here: every parent filter stays above.
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::all_unsupported(
            child_pushdown_result,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // The first copy executed gives the task context the shared plan runs in.
        let _ = self.state.context.set(context);
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::array::{AsArray, Int64Array};
    use datafusion::arrow::datatypes::Int64Type;
    use datafusion::datasource::source::DataSourceExec;
    use datafusion::execution::SessionStateBuilder;
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
            .with_query_planner(Arc::new(crate::planner::LakehouseQueryPlanner))
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
        Ok((
            rows_read(&plan, &mut Vec::new())?,
            displayable(plan.as_ref()).indent(false).to_string(),
        ))
    }

    /// The rows the scans of `plan` read, each shared plan's once (`counted` holds those
    /// counted already).
    fn rows_read(
        plan: &Arc<dyn ExecutionPlan>,
        counted: &mut Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<usize> {
        let mut read = 0;
        plan.apply(|node| {
            if node.downcast_ref::<DataSourceExec>().is_some() {
                read += node.metrics().and_then(|m| m.output_rows()).unwrap_or(0);
            }
            if let Some(shared) = node.downcast_ref::<SharedExec>()
                && !counted.iter().any(|c| Arc::ptr_eq(c, shared.subplan()))
            {
                counted.push(Arc::clone(shared.subplan()));
                read += rows_read(shared.subplan(), counted)?;
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(read)
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
        assert_eq!(
            shown.matches("SharedExec: subplan=0, readers=2").count(),
            2,
            "{shown}"
        );
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

    /// Subtrees are told apart by their content: two `VALUES` lists of one size (which
    /// DataFusion's plan text shows alike) are not taken for one subtree; the same list twice is.
    #[tokio::test]
    async fn subplans_are_told_apart_by_content() -> Result<()> {
        let (plain, sharing) = sessions();
        let different = "WITH a AS (SELECT x, count(*) AS c FROM (VALUES (1), (2)) t(x) GROUP BY x), \
                   b AS (SELECT x, count(*) AS c FROM (VALUES (3), (4)) t(x) GROUP BY x) \
                   SELECT * FROM a UNION ALL SELECT * FROM b";
        assert_eq!(
            rows(&sharing, different).await?,
            vec![(1, 1), (2, 1), (3, 1), (4, 1)]
        );
        let (_, shown) = scanned(&sharing, different).await?;
        assert!(!shown.contains("SharedExec"), "{shown}");
        let same = "WITH a AS (SELECT x, count(*) AS c FROM (VALUES (1), (2), (2)) t(x) GROUP BY x) \
                   SELECT * FROM a UNION ALL SELECT * FROM a";
        let (_, shown) = scanned(&sharing, same).await?;
        assert_eq!(shown.matches("SharedExec").count(), 2, "{shown}");
        assert_eq!(rows(&sharing, same).await?, rows(&plain, same).await?);
        assert_eq!(
            rows(&sharing, same).await?,
            vec![(1, 1), (1, 1), (2, 2), (2, 2)]
        );
        Ok(())
    }

    /// A different filter on each reference: the optimizer pushes each into its copy, the
    /// copies differ above their grouping, and the grouping they still share is shared, with
    /// DataFusion's answer. (Had each reader used other columns of the CTE, the optimizer would
    /// have pruned the copies differently, and nothing would be shared.)
    #[tokio::test]
    async fn a_filter_on_one_reference_keeps_the_answer() -> Result<()> {
        let dir = tempdir()?;
        let (plain, sharing) = sessions();
        register(dir.path(), &[&plain, &sharing]).await?;
        let sql = "WITH c AS (SELECT k, count(*) AS n, min(v) AS m FROM t GROUP BY k) \
                   SELECT a.k, b.m + a.m FROM c a JOIN c b ON a.k = b.k \
                   WHERE a.n > 8 AND b.m < 40 AND a.m >= 0 AND b.n > 0";
        let (_, shown) = scanned(&sharing, sql).await?;
        assert!(shown.contains("SharedExec"), "{shown}");
        let expected = rows(&plain, sql).await?;
        assert!(!expected.is_empty());
        assert_eq!(rows(&sharing, sql).await?, expected);
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
}
