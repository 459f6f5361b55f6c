//! Functions that make large values out of small arguments, with bounds: DataFusion's memory pool
//! counts what operators reserve, not what an expression allocates, so `repeat('x', 2e9)` or a
//! `generate_series` of 10¹¹ rows would grow the server by gigabytes before any limit saw them.
//! Each bounded function checks its arguments before the built-in one runs, and refuses with a
//! plan or execution error that names the bound:
//!
//! - `repeat`, `lpad`, `rpad`: results of at most [`MAX_VALUE_BYTES`];
//! - `array_repeat`, and `range`/`generate_series` as list functions: lists of at most
//!   [`MAX_LIST_ITEMS`];
//! - `generate_series`/`range` in `FROM`: at most [`MAX_GENERATED_ROWS`] rows.
//!
//! [`crate::sandbox`]'s memory backstop covers whatever else allocates outside the pool.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// A bound refused: the query needs more memory than it may have (answered like the memory
/// limit: 422 `memory_limit` over HTTP).
fn refuse<T>(message: String) -> Result<T> {
    Err(DataFusionError::ResourcesExhausted(message))
}

/// The largest string one bounded function may make.
pub const MAX_VALUE_BYTES: i64 = 16 * 1024 * 1024;
/// The most bytes one call of a bounded function may make for a whole batch.
pub const MAX_BATCH_BYTES: i64 = 256 * 1024 * 1024;
/// The most list items one call of a bounded function may make for a whole batch.
pub const MAX_BATCH_ITEMS: i64 = 10_000_000;
/// The longest list one bounded function may make.
pub const MAX_LIST_ITEMS: i64 = 1_000_000;
/// The most rows a table function may generate.
pub const MAX_GENERATED_ROWS: i64 = 10_000_000;

/// Replaces the unbounded built-ins of `ctx` with their bounded forms.
pub fn register(ctx: &SessionContext) {
    for (name, bound) in [
        ("repeat", Bound::Repeat),
        ("lpad", Bound::Pad),
        ("rpad", Bound::Pad),
        ("array_repeat", Bound::ArrayRepeat),
        ("range", Bound::Series),
        ("generate_series", Bound::Series),
        ("replace", Bound::Replace),
        ("regexp_replace", Bound::Replace),
    ] {
        if let Some(inner) = ctx.state().scalar_functions().get(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(BoundedScalar {
                inner: Arc::clone(inner),
                bound,
            }));
        }
    }
    for name in ["generate_series", "range"] {
        if let Ok(inner) = ctx.table_function(name) {
            ctx.register_udtf(
                name,
                Arc::new(BoundedSeries {
                    inner: Arc::clone(inner.function()),
                }),
            );
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Bound {
    /// `repeat(text, n)`: length × n bytes.
    Repeat,
    /// `lpad(text, n [, fill])`: n characters, up to 4 bytes each.
    Pad,
    /// `array_repeat(value, n)`: n items.
    ArrayRepeat,
    /// `range(start, stop [, step])`: (stop − start) ÷ step items.
    Series,
    /// `replace(text, from, to)`, `regexp_replace(text, pattern, to)`: up to length × length of
    /// `to` bytes.
    Replace,
}

/// The largest integer of an argument (each row of an array, or the scalar); `None` when there
/// is none (all null, or not a number).
fn max_int(value: &ColumnarValue) -> Option<i64> {
    match value {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(n) => n,
            _ => None,
        },
        ColumnarValue::Array(a) => {
            let ints = cast(a, &DataType::Int64).ok()?;
            datafusion::arrow::compute::max(ints.as_primitive::<Int64Type>())
        }
    }
}

/// A series bound or step in one unit: integers as they are; dates, timestamps and intervals in
/// nanoseconds (a month as 30 days), so a date series by the second counts its seconds.
/// `Err(())` for a value whose size cannot be told.
fn nanos(value: &ScalarValue) -> Result<Option<i128>, ()> {
    const DAY: i128 = 86_400_000_000_000;
    if value.is_null() {
        return Ok(None);
    }
    let n = match value {
        ScalarValue::Int8(Some(v)) => i128::from(*v),
        ScalarValue::Int16(Some(v)) => i128::from(*v),
        ScalarValue::Int32(Some(v)) => i128::from(*v),
        ScalarValue::Int64(Some(v)) => i128::from(*v),
        ScalarValue::UInt8(Some(v)) => i128::from(*v),
        ScalarValue::UInt16(Some(v)) => i128::from(*v),
        ScalarValue::UInt32(Some(v)) => i128::from(*v),
        ScalarValue::UInt64(Some(v)) => i128::from(*v),
        ScalarValue::Date32(Some(days)) => i128::from(*days) * DAY,
        ScalarValue::Date64(Some(ms)) => i128::from(*ms) * 1_000_000,
        ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
        ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
        ScalarValue::IntervalYearMonth(Some(months)) => i128::from(*months) * 30 * DAY,
        ScalarValue::IntervalDayTime(Some(v)) => {
            i128::from(v.days) * DAY + i128::from(v.milliseconds) * 1_000_000
        }
        ScalarValue::IntervalMonthDayNano(Some(v)) => {
            i128::from(v.months) * 30 * DAY + i128::from(v.days) * DAY + i128::from(v.nanoseconds)
        }
        _ => return Err(()),
    };
    Ok(Some(n))
}

/// Every value of an argument (each row of an array, or the scalar) in [`nanos`]' unit.
fn all_nanos(value: &ColumnarValue) -> Result<Vec<i128>, ()> {
    let scalars: Vec<ScalarValue> = match value {
        ColumnarValue::Scalar(s) => vec![s.clone()],
        ColumnarValue::Array(a) => (0..a.len())
            .map(|i| ScalarValue::try_from_array(a, i).map_err(|_| ()))
            .collect::<Result<_, ()>>()?,
    };
    let mut out = Vec::new();
    for s in &scalars {
        if let Some(n) = nanos(s)? {
            out.push(n);
        }
    }
    Ok(out)
}

/// The most items `range(start, stop [, step])` could make over all rows (`range(stop)` alone
/// counts from 0): the widest span between any start and any stop, by the smallest step in
/// size. `None` when it cannot be told.
fn series_len(args: &[Vec<i128>]) -> Option<i128> {
    let (starts, stops, steps): (&[i128], &[i128], &[i128]) = match args {
        [stop] => (&[0], stop, &[1]),
        [start, stop] => (start, stop, &[1]),
        [start, stop, step, ..] => (start, stop, step),
        [] => return Some(0),
    };
    let (Some(start_min), Some(start_max), Some(stop_min), Some(stop_max)) = (
        starts.iter().min(),
        starts.iter().max(),
        stops.iter().min(),
        stops.iter().max(),
    ) else {
        // All null: nothing is made.
        return Some(0);
    };
    let span = (stop_max - start_min).max(start_max - stop_min).max(0);
    let step = steps.iter().map(|s| s.abs()).filter(|s| *s > 0).min()?;
    Some(span / step + 1)
}

/// The longest string of an argument, in bytes.
fn max_len(value: &ColumnarValue) -> i64 {
    let len = match value {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::LargeUtf8(Some(t))
            | ScalarValue::Utf8View(Some(t)) => t.len(),
            _ => 0,
        },
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => a.as_string::<i32>().iter().flatten().map(str::len).max(),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().map(str::len).max(),
            DataType::Utf8View => a.as_string_view().iter().flatten().map(str::len).max(),
            _ => None,
        }
        .unwrap_or(0),
    };
    len as i64
}

/// Refuses a value over `per_value`, or a batch of `rows` such values over `per_batch` (one
/// call makes a whole batch at once: a bound per value alone would let 8,192 rows of it through).
fn within(
    name: &str,
    size: i128,
    rows: usize,
    per_value: i64,
    per_batch: i64,
    unit: &str,
) -> Result<()> {
    if size > i128::from(per_value) {
        return refuse(format!(
            "{name}: {size} {unit} in one value; at most {per_value} are allowed"
        ));
    }
    let batch = size.saturating_mul(rows.max(1) as i128);
    if batch > i128::from(per_batch) {
        return refuse(format!(
            "{name}: {batch} {unit} for {rows} rows at once; at most {per_batch} are allowed per batch"
        ));
    }
    Ok(())
}

impl Bound {
    fn check(self, name: &str, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let bytes =
            |size: i128| within(name, size, rows, MAX_VALUE_BYTES, MAX_BATCH_BYTES, "bytes");
        let items = |size: i128| within(name, size, rows, MAX_LIST_ITEMS, MAX_BATCH_ITEMS, "items");
        match self {
            Bound::Repeat => match (args.first(), args.get(1).and_then(max_int)) {
                (Some(text), Some(n)) => bytes(i128::from(max_len(text)) * i128::from(n.max(0))),
                _ => Ok(()),
            },
            Bound::Pad => match args.get(1).and_then(max_int) {
                // Up to 4 bytes a character.
                Some(n) => bytes(i128::from(n.max(0)) * 4),
                None => Ok(()),
            },
            Bound::ArrayRepeat => match args.get(1).and_then(max_int) {
                Some(n) => items(i128::from(n.max(0))),
                None => Ok(()),
            },
            Bound::Series => {
                let values: Result<Vec<Vec<i128>>, ()> = args.iter().map(all_nanos).collect();
                match values.ok().and_then(|v| series_len(&v)) {
                    Some(n) => items(n),
                    None => refuse(format!(
                        "{name}: the size of the list cannot be told from its arguments; at most {MAX_LIST_ITEMS} items are allowed"
                    )),
                }
            }
            Bound::Replace => match (args.first(), args.get(2)) {
                (Some(text), Some(with)) => {
                    bytes(i128::from(max_len(text)) * i128::from(max_len(with).max(1)))
                }
                _ => Ok(()),
            },
        }
    }
}

/// A built-in scalar function that checks its arguments first ([`Bound`]); everything else is
/// the built-in's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BoundedScalar {
    inner: Arc<ScalarUDF>,
    bound: Bound,
}

impl ScalarUDFImpl for BoundedScalar {
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

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.bound
            .check(self.inner.name(), &args.args, args.number_rows)?;
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// `generate_series`/`range` in `FROM`, refusing more than [`MAX_GENERATED_ROWS`] rows.
#[derive(Debug)]
struct BoundedSeries {
    inner: Arc<dyn TableFunctionImpl>,
}

impl TableFunctionImpl for BoundedSeries {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let values: Result<Vec<Vec<i128>>, ()> = args
            .exprs()
            .iter()
            .map(|e| match e {
                Expr::Literal(value, _) => nanos(value).map(|n| n.into_iter().collect()),
                Expr::Negative(inner) => match inner.as_ref() {
                    Expr::Literal(value, _) => {
                        nanos(value).map(|n| n.into_iter().map(|v| -v).collect())
                    }
                    _ => Err(()),
                },
                _ => Err(()),
            })
            .collect();
        match values.ok().and_then(|v| series_len(&v)) {
            Some(rows) if rows <= i128::from(MAX_GENERATED_ROWS) => self.inner.call_with_args(args),
            Some(rows) => refuse(format!(
                "generate_series/range: about {rows} rows; at most {MAX_GENERATED_ROWS} are generated"
            )),
            None => refuse(format!(
                "generate_series/range: the number of rows cannot be told from the arguments; at most {MAX_GENERATED_ROWS} are generated"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sql: &str) -> Result<Vec<datafusion::arrow::record_batch::RecordBatch>> {
        let ctx = SessionContext::new();
        register(&ctx);
        ctx.sql(sql).await?.collect().await
    }

    /// `sql`'s answer as a printed table.
    async fn table(sql: &str) -> String {
        let batches = run(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string()
    }

    #[tokio::test]
    async fn large_values_are_refused_before_they_are_made() {
        for sql in [
            "SELECT length(repeat('x', 2000000000))",
            "SELECT length(repeat(s, 100000000)) FROM (VALUES ('ab'), ('c')) t(s)",
            "SELECT length(lpad('x', 100000000))",
            "SELECT length(rpad('x', 100000000, 'yz'))",
            "SELECT cardinality(array_repeat(1, 100000000))",
            "SELECT cardinality(range(0, 100000000000))",
            "SELECT cardinality(generate_series(1, 100000000000, 2))",
            "SELECT count(*) FROM generate_series(1, 100000000000)",
            "SELECT count(*) FROM range(100000000000)",
            "SELECT cardinality(range(0, 1000000000, s)) FROM (VALUES (-1000000), (1), (1000000)) t(s)",
            "SELECT count(*) FROM generate_series(DATE '1970-01-01', DATE '2200-01-01', INTERVAL '1 second')",
            "SELECT length(replace(repeat('a', 16000000), 'a', repeat('b', 16000000)))",
            "SELECT length(regexp_replace(repeat('a', 1000000), 'a', repeat('b', 100)))",
            "SELECT length(repeat(CAST(value AS VARCHAR), 3000000)) FROM generate_series(1, 8192)",
        ] {
            let error = run(sql).await.expect_err(sql).to_string();
            assert!(error.contains("at most"), "{sql}: {error}");
        }
    }

    #[tokio::test]
    async fn ordinary_uses_still_work() {
        let text = table(
            "SELECT repeat('ab', 3) AS r, lpad('7', 3, '0') AS l, cardinality(range(1, 11)) AS n, \
             cardinality(array_repeat('x', 4)) AS a",
        )
        .await;
        assert!(text.contains("ababab") && text.contains("007"), "{text}");
        // An hourly series over a day.
        let text = table(
            "SELECT count(*) AS n FROM generate_series(TIMESTAMP '2026-01-01 00:00:00', \
             TIMESTAMP '2026-01-02 00:00:00', INTERVAL '1 hour')",
        )
        .await;
        assert!(text.contains("25"), "{text}");
        // A negative bound.
        table("SELECT count(*) FROM generate_series(-5, 5)").await;
        let text = table("SELECT count(*) AS n FROM generate_series(1, 1000000)").await;
        assert!(text.contains("1000000"), "{text}");
    }
}
