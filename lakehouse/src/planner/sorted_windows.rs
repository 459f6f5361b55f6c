//! Window functions over sorted input computed in one pass ([`SortedWindows`]), and the
//! operator it plans ([`SortedWindowExec`]).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::make_comparator;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, UInt64Array,
};
use datafusion::arrow::compute::{SortOptions, concat, partition, take};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{Expr, LogicalPlan, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, StandardWindowExpr, WindowExpr};
use datafusion::physical_expr_common::sort_expr::OrderingRequirements;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::PlanProperties;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, InputOrderMode, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};

/// Plans window functions over input sorted by their `PARTITION BY` keys without
/// [`BoundedWindowAggExec`], whose per-batch work grows with the number of window partitions it
/// still holds (DataFusion 55; apache/datafusion#23982). Analysts' windows are often of that
/// kind: a running sum per (sku, warehouse) has hundreds of thousands of partitions of a few rows.
///
/// - When every function of the window is one [`SortedWindowExec`] computes (running `sum` and
///   `count` over `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`, `lead`/`lag` by one,
///   `row_number`), it runs there: one pass over the sorted rows, whatever the number of
///   partitions.
/// - Otherwise a sorted, partitioned window runs in [`WindowAggExec`], which evaluates each
///   partition as one slice of the sorted input (still a fixed cost per partition).
///
/// The input is sorted, and so held, either way. On the stock-out query of
/// `benches/analyst_queries.rs` (1.1M ledger rows, ~750k partitions): 2.7 s with DataFusion's
/// plan, 1.6 s with `WindowAggExec` (ADR 0009 has the current figures).
#[derive(Debug, Default)]
pub struct SortedWindows;

impl PhysicalOptimizerRule for SortedWindows {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let window = if let Some(bounded) = node.downcast_ref::<BoundedWindowAggExec>() {
                let partitioned = bounded
                    .window_expr()
                    .first()
                    .is_some_and(|e| !e.partition_by().is_empty());
                if bounded.input_order_mode != InputOrderMode::Sorted || !partitioned {
                    return Ok(Transformed::no(node));
                }
                WindowAggExec::try_new(
                    bounded.window_expr().to_vec(),
                    Arc::clone(bounded.input()),
                    !bounded.partition_keys().is_empty(),
                )?
            } else if let Some(window) = node.downcast_ref::<WindowAggExec>() {
                WindowAggExec::try_new(
                    window.window_expr().to_vec(),
                    Arc::clone(window.input()),
                    !window.partition_keys().is_empty(),
                )?
            } else {
                return Ok(Transformed::no(node));
            };
            if let Some(sorted) = SortedWindowExec::try_new(Arc::new(window.clone()))? {
                return Ok(Transformed::yes(Arc::new(sorted) as Arc<dyn ExecutionPlan>));
            }
            if node.downcast_ref::<WindowAggExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(Arc::new(window) as Arc<dyn ExecutionPlan>))
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

/// Whether `plan` has a window function [`SortedWindowExec`] must not compute: one with a
/// `FILTER (WHERE ...)` or `IGNORE NULLS`. DataFusion 55's physical window expressions keep
/// both private (`PlainAggregateWindowExpr::filter`, `WindowUDFExpr::ignore_nulls`), so the
/// logical plan, where they are public, decides: such a query is planned without
/// [`SortedWindows`] (`LakehouseQueryPlanner`).
pub fn needs_datafusion_windows(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let stop = |found: bool| {
        if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        }
    };
    let walked = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            found |= expr.exists(|e| {
                Ok(matches!(e, Expr::WindowFunction(w)
                    if w.params.filter.is_some()
                        || w.params.null_treatment == Some(NullTreatment::IgnoreNulls)))
            })?;
            Ok(stop(found))
        })?;
        Ok(stop(found))
    });
    found || walked.is_err()
}

/// A window function [`SortedWindowExec`] computes in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    /// `sum(x)` from the partition's first row to the current one (`Int64` or `Float64`).
    Sum,
    /// `count(x)` from the partition's first row to the current one.
    Count,
    /// `lead(x)`: the next row's value in the partition, null on its last row.
    Lead,
    /// `lag(x)`: the previous row's value in the partition, null on its first row.
    Lag,
    /// `row_number()`: 1, 2, ... in each partition.
    RowNumber,
}

#[derive(Debug, Clone)]
struct RunningExpr {
    running: Running,
    arg: Option<Arc<dyn PhysicalExpr>>,
    output: DataType,
}

fn running_from_start(expr: &dyn WindowExpr) -> bool {
    let frame = expr.get_window_frame();
    frame.units == WindowFrameUnits::Rows
        && matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null())
        && frame.end_bound == WindowFrameBound::CurrentRow
}

/// The one-pass form of `expr`, if it has one.
fn running_expr(
    expr: &Arc<dyn WindowExpr>,
    input: &datafusion::arrow::datatypes::Schema,
) -> Result<Option<RunningExpr>> {
    let output = expr.field()?.data_type().clone();
    if let Some(aggregate) = expr.as_any().downcast_ref::<PlainAggregateWindowExpr>() {
        let function = aggregate.get_aggregate_expr();
        let args = function.expressions();
        // A `FILTER (WHERE ...)` is not here: a query with one is planned without this rule
        // ([`needs_datafusion_windows`]).
        if !running_from_start(aggregate)
            || function.is_distinct()
            || !function.order_bys().is_empty()
            || args.len() != 1
        {
            return Ok(None);
        }
        let arg_type = args[0].data_type(input)?;
        let running = match function.fun().name() {
            "sum"
                if arg_type == output && matches!(output, DataType::Int64 | DataType::Float64) =>
            {
                Running::Sum
            }
            "count" if output == DataType::Int64 => Running::Count,
            _ => return Ok(None),
        };
        return Ok(Some(RunningExpr {
            running,
            arg: Some(Arc::clone(&args[0])),
            output,
        }));
    }
    let Some(standard) = expr.as_any().downcast_ref::<StandardWindowExpr>() else {
        return Ok(None);
    };
    let Some(udf) = standard
        .get_standard_func_expr()
        .as_any()
        .downcast_ref::<WindowUDFExpr>()
    else {
        return Ok(None);
    };
    // `IGNORE NULLS` is not here either ([`needs_datafusion_windows`]).
    let args = udf.args();
    let (running, arg) = match (udf.fun().name(), args.len()) {
        ("lead", 1) => (Running::Lead, Some(Arc::clone(&args[0]))),
        ("lag", 1) => (Running::Lag, Some(Arc::clone(&args[0]))),
        ("row_number", 0) if output == DataType::UInt64 => (Running::RowNumber, None),
        _ => return Ok(None),
    };
    if let Some(arg) = &arg
        && arg.data_type(input)? != output
    {
        return Ok(None);
    }
    Ok(Some(RunningExpr {
        running,
        arg,
        output,
    }))
}

/// Window functions over input sorted by their `PARTITION BY` keys, computed in one pass over
/// each output partition's rows: the partitions are the runs of equal keys, and each function is
/// a loop (running sums, counts, row numbers) or one `take` (lead, lag) over all of them. Its
/// plan properties (schema, required distribution and ordering) are those of the
/// [`WindowAggExec`] it replaces, which it keeps.
#[derive(Debug)]
pub struct SortedWindowExec {
    window: Arc<WindowAggExec>,
    exprs: Vec<RunningExpr>,
    metrics: ExecutionPlanMetricsSet,
}

impl SortedWindowExec {
    /// The one-pass form of `window`: `None` unless it has `PARTITION BY` keys, every function
    /// has a one-pass form, and its input is sorted as it requires.
    pub fn try_new(window: Arc<WindowAggExec>) -> Result<Option<Self>> {
        let Some(first) = window.window_expr().first() else {
            return Ok(None);
        };
        if first.partition_by().is_empty() {
            return Ok(None);
        }
        let input_schema = window.input().schema();
        let mut exprs = Vec::with_capacity(window.window_expr().len());
        for expr in window.window_expr() {
            match running_expr(expr, &input_schema)? {
                Some(e) => exprs.push(e),
                None => return Ok(None),
            }
        }
        let sorted = match window
            .required_input_ordering()
            .into_iter()
            .next()
            .flatten()
        {
            Some(
                OrderingRequirements::Hard(alternatives) | OrderingRequirements::Soft(alternatives),
            ) => {
                let properties = window.input().equivalence_properties();
                let mut any = false;
                for requirement in alternatives {
                    any |= properties.ordering_satisfy_requirement(requirement)?;
                }
                any
            }
            None => false,
        };
        if !sorted {
            return Ok(None);
        }
        Ok(Some(Self {
            window,
            exprs,
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }
}

impl DisplayAs for SortedWindowExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<&str> = self.window.window_expr().iter().map(|e| e.name()).collect();
        write!(f, "SortedWindowExec: wdw=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for SortedWindowExec {
    fn name(&self) -> &str {
        "SortedWindowExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.window.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.window.input()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        self.window.apply_expressions(f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        self.window.maintains_input_order()
    }

    fn required_input_ordering(&self) -> Vec<Option<OrderingRequirements>> {
        self.window.required_input_ordering()
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        self.window.input_distribution_requirements()
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let window = Arc::clone(&self.window).with_new_children(children)?;
        let Some(window) = window.downcast_ref::<WindowAggExec>() else {
            return Err(DataFusionError::Internal("a window stays a window".into()));
        };
        let window = Arc::new(window.clone());
        match Self::try_new(Arc::clone(&window))? {
            Some(sorted) => Ok(Arc::new(sorted)),
            None => Ok(window),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let mut input = self
            .window
            .input()
            .execute(partition, Arc::clone(&context))?;
        let input_schema = self.window.input().schema();
        let schema = self.schema();
        let keys = self.window.window_expr()[0].partition_by().to_vec();
        let exprs = self.exprs.clone();
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let reservation = MemoryConsumer::new(format!("SortedWindowExec[{partition}]"))
            .register(context.memory_pool());
        let output_schema = Arc::clone(&schema);
        let batches = async move {
            let mut batches = Vec::new();
            while let Some(batch) = input.next().await {
                let batch = batch?;
                // A sort's output batches are slices of larger buffers: count the slices.
                let mut bytes = 0;
                for column in batch.columns() {
                    bytes += column.to_data().get_slice_memory_size()?;
                }
                reservation.try_grow(bytes)?;
                batches.push(batch);
            }
            let timer = metrics.elapsed_compute().timer();
            let out = evaluate(&batches, &keys, &exprs, &input_schema, &output_schema)?;
            drop(batches);
            timer.done();
            metrics.record_output(out.iter().map(RecordBatch::num_rows).sum());
            drop(reservation);
            Ok::<_, DataFusionError>(futures::stream::iter(out.into_iter().map(Ok)))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(batches).try_flatten(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The partitions of `batches` (sorted by the partition keys `keys`), as ranges of row numbers
/// over all of them: the runs of equal keys in each batch, joined where a batch's last row and
/// the next batch's first have equal keys.
fn partitions(
    batches: &[RecordBatch],
    keys: &[Arc<dyn PhysicalExpr>],
) -> Result<Vec<std::ops::Range<usize>>> {
    let mut ranges: Vec<std::ops::Range<usize>> = Vec::new();
    let mut previous: Option<Vec<ArrayRef>> = None;
    let mut offset = 0;
    for batch in batches {
        let n = batch.num_rows();
        if n == 0 {
            continue;
        }
        let columns = keys
            .iter()
            .map(|k| k.evaluate(batch)?.into_array(n))
            .collect::<Result<Vec<_>>>()?;
        let mut joined = false;
        if let Some(previous) = &previous {
            joined = true;
            for (before, now) in previous.iter().zip(&columns) {
                let compare =
                    make_comparator(before.as_ref(), now.as_ref(), SortOptions::default())?;
                if compare(before.len() - 1, 0) != std::cmp::Ordering::Equal {
                    joined = false;
                    break;
                }
            }
        }
        for (i, range) in partition(&columns)?.ranges().into_iter().enumerate() {
            let global = offset + range.start..offset + range.end;
            match ranges.last_mut() {
                Some(last) if i == 0 && joined => last.end = global.end,
                _ => ranges.push(global),
            }
        }
        previous = Some(columns);
        offset += n;
    }
    Ok(ranges)
}

/// `batches` (sorted by the partition keys `keys`), each with one column per window function.
fn evaluate(
    batches: &[RecordBatch],
    keys: &[Arc<dyn PhysicalExpr>],
    exprs: &[RunningExpr],
    input_schema: &datafusion::arrow::datatypes::SchemaRef,
    schema: &datafusion::arrow::datatypes::SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let ranges = partitions(batches, keys)?;
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut results = Vec::with_capacity(exprs.len());
    for expr in exprs {
        // The argument over all rows: one column, not every column of the input.
        let arg = match &expr.arg {
            Some(arg) => {
                let parts = batches
                    .iter()
                    .map(|b| arg.evaluate(b)?.into_array(b.num_rows()))
                    .collect::<Result<Vec<_>>>()?;
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                Some(match parts.len() {
                    0 => datafusion::arrow::array::new_empty_array(&arg.data_type(input_schema)?),
                    _ => concat(&parts)?,
                })
            }
            None => None,
        };
        let column: ArrayRef = match (expr.running, arg) {
            (Running::Sum, Some(arg)) => match expr.output {
                DataType::Int64 => {
                    Arc::new(running_sum_i64(arg.as_primitive::<Int64Type>(), &ranges))
                }
                _ => Arc::new(running_sum_f64(arg.as_primitive::<Float64Type>(), &ranges)),
            },
            (Running::Count, Some(arg)) => Arc::new(running_count(arg.as_ref(), &ranges)),
            (Running::Lead, Some(arg)) => take(&arg, &shifted(&ranges, n, true), None)?,
            (Running::Lag, Some(arg)) => take(&arg, &shifted(&ranges, n, false), None)?,
            (Running::RowNumber, _) => {
                let mut out = Vec::with_capacity(n);
                for range in &ranges {
                    out.extend(1..=range.len() as u64);
                }
                Arc::new(UInt64Array::from(out))
            }
            (running, None) => {
                return Err(DataFusionError::Internal(format!(
                    "{running:?} needs an argument"
                )));
            }
        };
        results.push(column);
    }
    let mut out = Vec::with_capacity(batches.len());
    let mut offset = 0;
    for batch in batches {
        let rows = batch.num_rows();
        let mut columns = batch.columns().to_vec();
        columns.extend(results.iter().map(|r| r.slice(offset, rows)));
        out.push(RecordBatch::try_new(Arc::clone(schema), columns)?);
        offset += rows;
    }
    Ok(out)
}

fn running_sum_i64(values: &Int64Array, ranges: &[std::ops::Range<usize>]) -> Int64Array {
    let mut out = Vec::with_capacity(values.len());
    for range in ranges {
        let mut sum: Option<i64> = None;
        for i in range.clone() {
            if values.is_valid(i) {
                sum = Some(sum.unwrap_or(0).wrapping_add(values.value(i)));
            }
            out.push(sum);
        }
    }
    Int64Array::from(out)
}

fn running_sum_f64(values: &Float64Array, ranges: &[std::ops::Range<usize>]) -> Float64Array {
    let mut out = Vec::with_capacity(values.len());
    for range in ranges {
        let mut sum: Option<f64> = None;
        for i in range.clone() {
            if values.is_valid(i) {
                sum = Some(sum.unwrap_or(0.0) + values.value(i));
            }
            out.push(sum);
        }
    }
    Float64Array::from(out)
}

fn running_count(values: &dyn Array, ranges: &[std::ops::Range<usize>]) -> Int64Array {
    let mut out = Vec::with_capacity(values.len());
    for range in ranges {
        let mut count = 0i64;
        for i in range.clone() {
            count += i64::from(values.is_valid(i));
            out.push(count);
        }
    }
    Int64Array::from(out)
}

/// For each row, the index of the next (`lead`) or previous row of its partition, or null.
fn shifted(ranges: &[std::ops::Range<usize>], n: usize, lead: bool) -> UInt64Array {
    let mut out = Vec::with_capacity(n);
    for range in ranges {
        for i in range.clone() {
            out.push(if lead {
                (i + 1 < range.end).then_some(i as u64 + 1)
            } else {
                (i > range.start).then(|| i as u64 - 1)
            });
        }
    }
    UInt64Array::from(out)
}

/// The one child of a single-input operator's `with_new_children`, or an internal error.
pub(crate) fn only_child(
    mut children: Vec<Arc<dyn ExecutionPlan>>,
    operator: &str,
) -> Result<Arc<dyn ExecutionPlan>> {
    match (children.pop(), children.is_empty()) {
        (Some(child), true) => Ok(child),
        _ => Err(DataFusionError::Internal(format!(
            "{operator} has one child"
        ))),
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

    /// Running sums and `lead` over many small partitions: the plan uses `SortedWindowExec`, and
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
        assert!(shown.contains("SortedWindowExec"), "{shown}");
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
        let differ = got.iter().zip(&expected).position(|(a, b)| a != b);
        assert!(differ.is_none(), "row {differ:?} differs");
        assert_eq!(got.len(), expected.len());
        Ok(())
    }

    fn context(rule: bool) -> Result<SessionContext> {
        // Small batches: many partitions run across the end of one batch into the next.
        let mut builder = SessionStateBuilder::new()
            .with_default_features()
            .with_config(datafusion::prelude::SessionConfig::new().with_batch_size(97));
        if rule {
            builder = builder.with_physical_optimizer_rule(Arc::new(SortedWindows));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        // 30k rows in ~3k (sku, warehouse) partitions of 1 to ~20 rows; nulls in both values.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |m: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % m
        };
        let n = 30_000;
        let mut skus = Vec::with_capacity(n);
        let mut warehouses = Vec::with_capacity(n);
        let mut ints = Vec::with_capacity(n);
        let mut floats = Vec::with_capacity(n);
        for _ in 0..n {
            skus.push(format!("sku-{}", next(1_000)));
            warehouses.push(["wh-1", "wh-2", "wh-3"][next(3) as usize]);
            ints.push((next(10) > 0).then(|| next(200) as i64 - 100));
            floats.push((next(7) > 0).then(|| next(1_000) as f64 / 8.0));
        }
        // Distinct times, so that every ORDER BY is total and both plans see the same order.
        let times: Vec<i64> = (0..n as i64).map(|i| (i * 7_919) % n as i64).collect();
        let batch = RecordBatch::try_from_iter(vec![
            (
                "sku",
                Arc::new(datafusion::arrow::array::StringArray::from(skus)) as ArrayRef,
            ),
            (
                "warehouse",
                Arc::new(datafusion::arrow::array::StringArray::from(warehouses)),
            ),
            ("t", Arc::new(Int64Array::from(times))),
            ("v", Arc::new(Int64Array::from(ints))),
            ("f", Arc::new(Float64Array::from(floats))),
        ])?;
        ctx.register_batch("ledger", batch)?;
        Ok(ctx)
    }

    /// The first line where two printed answers differ (the whole answers are too long to show).
    fn same(ours: &str, theirs: &str) {
        let differ = ours.lines().zip(theirs.lines()).find(|(a, b)| a != b);
        assert!(differ.is_none(), "first difference: {differ:?}");
        assert_eq!(ours.lines().count(), theirs.lines().count());
    }

    async fn answer(ctx: &SessionContext, sql: &str) -> Result<(String, String)> {
        let frame = ctx.sql(sql).await?;
        let plan = frame.clone().create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        let rows = datafusion::arrow::util::pretty::pretty_format_batches(&frame.collect().await?)?;
        Ok((shown, rows.to_string()))
    }

    /// Every function `SortedWindowExec` computes, over strings keys, nulls and partitions of
    /// one row, gives DataFusion's own answers; a window it does not compute (the default
    /// `RANGE` frame) keeps DataFusion's operator, with the same answers too.
    #[tokio::test]
    async fn the_one_pass_window_answers_like_datafusion() -> Result<()> {
        let (with_rule, without) = (context(true)?, context(false)?);
        let supported = "SELECT sku, warehouse, t, v, f, \
            sum(v) OVER (PARTITION BY sku, warehouse ORDER BY t ROWS UNBOUNDED PRECEDING) AS sum_v, \
            sum(f) OVER (PARTITION BY sku, warehouse ORDER BY t ROWS UNBOUNDED PRECEDING) AS sum_f, \
            count(v) OVER (PARTITION BY sku, warehouse ORDER BY t ROWS UNBOUNDED PRECEDING) AS count_v, \
            count(*) OVER (PARTITION BY sku, warehouse ORDER BY t ROWS UNBOUNDED PRECEDING) AS count_all, \
            lead(v) OVER w AS lead_v, lag(f) OVER w AS lag_f, lead(sku) OVER w AS lead_sku, \
            row_number() OVER w AS n \
            FROM ledger WINDOW w AS (PARTITION BY sku, warehouse ORDER BY t) \
            ORDER BY sku, warehouse, t";
        let (plan, ours) = answer(&with_rule, supported).await?;
        assert!(plan.contains("SortedWindowExec"), "{plan}");
        assert!(
            !plan.contains("WindowAggExec"),
            "every function in one pass: {plan}"
        );
        let (plan, theirs) = answer(&without, supported).await?;
        assert!(!plan.contains("SortedWindowExec"), "{plan}");
        same(&ours, &theirs);

        let unsupported = "SELECT sku, warehouse, t, \
            sum(v) OVER (PARTITION BY sku, warehouse ORDER BY t) AS range_sum, \
            lead(v, 2) OVER (PARTITION BY sku, warehouse ORDER BY t) AS lead_2 \
            FROM ledger ORDER BY sku, warehouse, t";
        let (plan, ours) = answer(&with_rule, unsupported).await?;
        assert!(!plan.contains("SortedWindowExec"), "{plan}");
        same(&ours, &answer(&without, unsupported).await?.1);
        Ok(())
    }
}
