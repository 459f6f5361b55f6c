//! Scalar functions the lakehouse's SQL sessions use in place of DataFusion's own.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, make_array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::Result;
use datafusion::functions::datetime::date_trunc::DateTruncFunc;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// `date_trunc` with UTC timestamps truncated by integer arithmetic.
///
/// Every lakehouse timestamp is `Timestamp(µs, "UTC")`. DataFusion 55 truncates a timestamp
/// that carries a time zone to a day, week, month, quarter or year through chrono, value by
/// value, even when the zone is UTC; without a zone it uses arithmetic on the epoch count. In
/// UTC both give the same instant, so for a UTC array this drops the zone (the values are
/// unchanged: they count from the epoch either way), lets DataFusion's own function truncate,
/// and puts the zone back. Anything else (other zones, scalars, times) goes to DataFusion's
/// function as it is.
///
/// On the cohort query of `benches/analyst_queries.rs` (`date_trunc('week', first_at)` over
/// 330k first orders), ADR 0009 has the figures.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct UtcDateTrunc {
    inner: DateTruncFunc,
}

impl UtcDateTrunc {
    /// The function, ready to register under DataFusion's name (it replaces the built-in).
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            inner: DateTruncFunc::new(),
        })
    }
}

/// Whether a timestamp's zone is UTC under another name.
fn is_utc(zone: &str) -> bool {
    ["UTC", "Etc/UTC", "Z", "+00:00", "+0000", "+00"]
        .iter()
        .any(|utc| zone.eq_ignore_ascii_case(utc))
}

/// The same values as another timestamp type (no copy of the buffers).
fn retyped(array: &ArrayRef, to: DataType) -> Result<ArrayRef> {
    Ok(make_array(
        array.to_data().into_builder().data_type(to).build()?,
    ))
}

fn without_zone(field: &FieldRef) -> FieldRef {
    match field.data_type() {
        DataType::Timestamp(unit, _) => Arc::new(
            Field::new(
                field.name(),
                DataType::Timestamp(*unit, None),
                field.is_nullable(),
            )
            .with_metadata(field.metadata().clone()),
        ),
        _ => Arc::clone(field),
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let utc = match args.args.get(1) {
            Some(ColumnarValue::Array(array)) => match array.data_type() {
                DataType::Timestamp(unit, Some(zone)) if is_utc(zone) => {
                    Some((Arc::clone(array), *unit, array.data_type().clone()))
                }
                _ => None,
            },
            _ => None,
        };
        let Some((array, unit, zoned)) = utc else {
            return self.inner.invoke_with_args(args);
        };
        args.args[1] = ColumnarValue::Array(retyped(&array, DataType::Timestamp(unit, None))?);
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = without_zone(field);
        }
        args.return_field = without_zone(&args.return_field);
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(truncated) => {
                Ok(ColumnarValue::Array(retyped(&truncated, zoned)?))
            }
            // An array in gives an array out; anything else is DataFusion's own answer.
            other => Ok(other),
        }
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::TimestampMicrosecondType;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;
    use proptest::prelude::*;

    use super::*;

    /// Truncates `micros` (UTC) with DataFusion's own function and with ours, at every
    /// granularity; the answers are returned side by side.
    async fn both(micros: Vec<i64>, zone: &str) -> Result<Vec<(String, Vec<i64>, Vec<i64>)>> {
        let array = TimestampMicrosecondArray::from(micros).with_timezone(zone);
        let batch = RecordBatch::try_from_iter([("t", Arc::new(array) as ArrayRef)])?;
        let builtin = SessionContext::new();
        builtin.register_batch("ts", batch.clone())?;
        let ours = SessionContext::new();
        ours.register_udf(UtcDateTrunc::udf());
        ours.register_batch("ts", batch)?;
        let mut answers = Vec::new();
        for granularity in [
            "microsecond",
            "millisecond",
            "second",
            "minute",
            "hour",
            "day",
            "week",
            "month",
            "quarter",
            "year",
        ] {
            let sql = format!("SELECT date_trunc('{granularity}', t) AS d FROM ts");
            let mut got = Vec::new();
            for ctx in [&builtin, &ours] {
                let batches = ctx.sql(&sql).await?.collect().await?;
                let mut values = Vec::new();
                for b in &batches {
                    let column = b.column(0);
                    assert_eq!(
                        column.data_type(),
                        &DataType::Timestamp(
                            datafusion::arrow::datatypes::TimeUnit::Microsecond,
                            Some(zone.into())
                        ),
                        "{granularity}: the zone is kept"
                    );
                    values.extend(column.as_primitive::<TimestampMicrosecondType>().values());
                }
                got.push(values);
            }
            let theirs = got.remove(0);
            let ours = got.remove(0);
            answers.push((granularity.to_owned(), theirs, ours));
        }
        Ok(answers)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        /// Any UTC instants from 1900 to 2200, at every granularity: the same truncation as
        /// DataFusion's chrono path. Another zone goes to DataFusion's function unchanged.
        #[test]
        fn truncates_utc_like_datafusion(
            micros in proptest::collection::vec(-2_208_988_800_000_000i64..7_258_118_400_000_000, 1..200),
            zone in prop_oneof![Just("UTC"), Just("+00:00"), Just("Europe/Paris")],
        ) {
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            for (granularity, theirs, ours) in rt.block_on(both(micros, zone)).expect("query") {
                prop_assert_eq!(theirs, ours, "{}", granularity);
            }
        }
    }

    #[tokio::test]
    async fn a_week_starts_on_monday_and_nulls_stay_null() -> Result<()> {
        let ctx = SessionContext::new();
        ctx.register_udf(UtcDateTrunc::udf());
        // 2026-01-07 (a Wednesday) 13:45 UTC, and a null.
        let array = TimestampMicrosecondArray::from(vec![Some(1_767_793_500_000_000), None])
            .with_timezone("UTC");
        let batch = RecordBatch::try_from_iter([("t", Arc::new(array) as ArrayRef)])?;
        ctx.register_batch("ts", batch)?;
        let batches = ctx
            .sql("SELECT CAST(date_trunc('week', t) AS VARCHAR) FROM ts")
            .await?
            .collect()
            .await?;
        let shown = batches[0].column(0).as_string_view();
        assert_eq!(shown.value(0), "2026-01-05T00:00:00Z");
        assert!(shown.is_null(1));
        Ok(())
    }
}
