//! Dynamic filters applied just above an unnest, which DataFusion's filters cannot pass.
//!
//! A hash join hands its probe side a dynamic filter once its build side is in: the keys it
//! holds. DataFusion pushes it down through projections, repartitions and groupings on the key
//! to the scan, which skips rows that cannot join. An unnest stops it: when the key is an
//! unnested element (`unnest(skus) AS sku`), no scan can apply it, and every row goes on. On the
//! top-20 query of `benches/analyst_queries.rs`, all 200k skus are grouped (`min(product_id)`
//! per sku) before the join keeps the 12k that were sold in the week.
//!
//! [`FilterAboveUnnest`] puts a [`DynamicFilterExec`] over every unnest; it takes the dynamic
//! filters that reach it and drops, batch by batch, the rows they rule out. A filter that is not
//! ready yet (the build side is still running) passes every row, as it would at a scan. Where
//! no filter reaches it, the node removes itself.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::{PhysicalExpr, conjunction};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::PlanProperties;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::unnest::UnnestExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream, apply_expression_roots,
};

use crate::planner::sorted_windows::only_child;
use futures::StreamExt;

/// Puts a [`DynamicFilterExec`] over every [`UnnestExec`]. It must run before DataFusion's late
/// filter pushdown, which is the pass that brings the joins' dynamic filters down.
#[derive(Debug, Default)]
pub struct FilterAboveUnnest;

impl PhysicalOptimizerRule for FilterAboveUnnest {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan.transform_up(|node| {
            let over_unnest = node
                .children()
                .iter()
                .any(|child| child.downcast_ref::<UnnestExec>().is_some());
            if node.downcast_ref::<DynamicFilterExec>().is_some() || !over_unnest {
                return Ok(Transformed::no(node));
            }
            let children = node
                .children()
                .into_iter()
                .map(|child| {
                    if child.downcast_ref::<UnnestExec>().is_some() {
                        Arc::new(DynamicFilterExec::new(Arc::clone(child), Vec::new()))
                            as Arc<dyn ExecutionPlan>
                    } else {
                        Arc::clone(child)
                    }
                })
                .collect();
            #[allow(deprecated)]
            let node = node.with_new_children(children)?;
            Ok(Transformed::yes(node))
        })?;
        Ok(plan.data)
    }

    fn name(&self) -> &str {
        "FilterAboveUnnest"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Drops the rows that the dynamic filters pushed to it rule out (see the module's notes).
#[derive(Debug)]
pub struct DynamicFilterExec {
    input: Arc<dyn ExecutionPlan>,
    filters: Vec<Arc<dyn PhysicalExpr>>,
    metrics: ExecutionPlanMetricsSet,
}

impl DynamicFilterExec {
    fn new(input: Arc<dyn ExecutionPlan>, filters: Vec<Arc<dyn PhysicalExpr>>) -> Self {
        Self {
            input,
            filters,
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }
}

impl DisplayAs for DynamicFilterExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let shown: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
        write!(f, "DynamicFilterExec: predicate=[{}]", shown.join(" AND "))
    }
}

/// The rows of `batch` that `predicate` keeps.
fn apply(predicate: &Arc<dyn PhysicalExpr>, batch: RecordBatch) -> Result<RecordBatch> {
    match predicate.evaluate(&batch)? {
        ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))) => Ok(batch),
        ColumnarValue::Scalar(_) => Ok(batch.slice(0, 0)),
        ColumnarValue::Array(keep) => {
            let keep = keep.as_boolean_opt().ok_or_else(|| {
                DataFusionError::Internal(format!(
                    "a dynamic filter gave {}, not booleans",
                    keep.data_type()
                ))
            })?;
            Ok(filter_record_batch(&batch, keep)?)
        }
    }
}

impl ExecutionPlan for DynamicFilterExec {
    fn name(&self) -> &str {
        "DynamicFilterExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        apply_expression_roots(&self.filters, f)
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = only_child(children, "DynamicFilterExec")?;
        Ok(Arc::new(Self::new(input, self.filters.clone())))
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        // The unnest below can take none of them.
        Ok(FilterDescription::all_unsupported(
            &parent_filters,
            &self.children(),
        ))
    }

    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        if phase != FilterPushdownPhase::Post {
            return Ok(FilterPushdownPropagation::all_unsupported(
                child_pushdown_result,
            ));
        }
        let mut filters = self.filters.clone();
        let mut pushed = Vec::new();
        for result in child_pushdown_result.parent_filters {
            // Only DataFusion's dynamic filters (joins, TopK, aggregates) travel in this phase;
            // anything else is left to its owner.
            let dynamic = (result.filter.as_ref() as &dyn std::any::Any)
                .downcast_ref::<DynamicFilterPhysicalExpr>()
                .is_some();
            match result.all() {
                PushedDown::Yes => pushed.push(PushedDown::Yes),
                PushedDown::No if dynamic => {
                    filters.push(result.filter);
                    pushed.push(PushedDown::Yes);
                }
                PushedDown::No => pushed.push(PushedDown::No),
            }
        }
        let node: Arc<dyn ExecutionPlan> = if filters.is_empty() {
            Arc::clone(&self.input)
        } else {
            Arc::new(Self::new(Arc::clone(&self.input), filters))
        };
        Ok(FilterPushdownPropagation::with_parent_pushdown_result(pushed).with_updated_node(node))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let predicate = conjunction(self.filters.iter().cloned());
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let rows = input.map(move |batch| {
            let timer = metrics.elapsed_compute().timer();
            let kept = batch.and_then(|batch| apply(&predicate, batch));
            timer.done();
            if let Ok(kept) = &kept {
                metrics.record_output(kept.num_rows());
            }
            kept
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema(), rows)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, ListArray, StringArray};
    use datafusion::arrow::datatypes::Int32Type;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;
    use crate::planner::insert_before_late_pushdown;

    fn register(ctx: &SessionContext) -> Result<()> {
        // 3000 products, two skus each; orders name 40 of the skus, some twice.
        let ids: Vec<String> = (0..3000).map(|i| format!("p-{i:05}")).collect();
        let skus = ListArray::from_iter_primitive::<Int32Type, _, _>(
            (0..3000).map(|i| Some(vec![Some(2 * i), Some(2 * i + 1)])),
        );
        let skus = datafusion::arrow::compute::cast(
            &skus,
            &datafusion::arrow::datatypes::DataType::List(Arc::new(
                datafusion::arrow::datatypes::Field::new_list_field(
                    datafusion::arrow::datatypes::DataType::Utf8,
                    true,
                ),
            )),
        )?;
        let products = RecordBatch::try_from_iter([
            ("product_id", Arc::new(StringArray::from(ids)) as ArrayRef),
            ("skus", skus),
        ])?;
        let sold: Vec<String> = (0..60).map(|i| ((i * 97) % 40 * 131).to_string()).collect();
        let orders =
            RecordBatch::try_from_iter([("sku", Arc::new(StringArray::from(sold)) as ArrayRef)])?;
        ctx.register_batch("products", products)?;
        ctx.register_batch("orders", orders)?;
        Ok(())
    }

    const SQL: &str = "WITH sku_product AS (\
            SELECT sku, min(product_id) AS product_id \
            FROM (SELECT unnest(skus) AS sku, product_id FROM products) s GROUP BY sku) \
        SELECT p.product_id, count(*) AS n FROM orders o JOIN sku_product p ON o.sku = p.sku \
        GROUP BY p.product_id ORDER BY p.product_id";

    /// The join's dynamic filter stops above the unnest, where it drops the skus nobody
    /// ordered before they are grouped; the answer is the one DataFusion's plan gives.
    #[tokio::test]
    async fn the_join_filter_applies_above_the_unnest_with_the_same_answer() -> Result<()> {
        let config = SessionConfig::new().with_target_partitions(2);
        let plain = SessionContext::new_with_config(config.clone());
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features()
            .with_physical_optimizer_rules(insert_before_late_pushdown(
                PhysicalOptimizer::new().rules,
                Arc::new(FilterAboveUnnest),
            ))
            .build();
        let ours = SessionContext::new_with_state(state);
        register(&plain)?;
        register(&ours)?;

        let expected = plain.sql(SQL).await?.collect().await?;
        let plan = ours.sql(SQL).await?.create_physical_plan().await?;
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(
            shown.contains("DynamicFilterExec: predicate=[DynamicFilter"),
            "{shown}"
        );
        let got = collect(Arc::clone(&plan), ours.task_ctx()).await?;
        assert_eq!(
            datafusion::arrow::util::pretty::pretty_format_batches(&got)?.to_string(),
            datafusion::arrow::util::pretty::pretty_format_batches(&expected)?.to_string()
        );
        let rows: usize = got.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 40);

        // Of the 6000 unnested rows, only the 40 ordered skus went on to the grouping.
        let mut passed = None;
        plan.apply(|node| {
            if node.downcast_ref::<DynamicFilterExec>().is_some() {
                passed = node.metrics().and_then(|m| m.output_rows());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let passed = passed.expect("the filter's row count");
        assert_eq!(passed, 40, "only the ordered skus pass");
        Ok(())
    }
}
