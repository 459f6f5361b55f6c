//! `emporium schema`: print the JSON Schema of the wire format or the Arrow schema of each type.

use anyhow::bail;
use clap::{Args, ValueEnum};
use emporium_schemas::EventKind;

#[derive(Args)]
pub struct SchemaArgs {
    /// Which schema to print.
    #[arg(value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Only this event type (Arrow only), e.g. order_placed.
    #[arg(long = "type")]
    kind: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The JSON Schema (draft 2020-12) of one event: what producers validate against.
    Json,
    /// The Arrow schema of each event type's lakehouse table.
    Arrow,
}

pub fn main(args: SchemaArgs) -> anyhow::Result<()> {
    match args.format {
        Format::Json => {
            let schema = emporium_schemas::json_schema::event_json_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
        }
        Format::Arrow => {
            let kinds: Vec<EventKind> = match &args.kind {
                Some(name) => match EventKind::from_name(name) {
                    Some(k) => vec![k],
                    None => bail!(
                        "unknown event type {name:?}; expected one of: {}",
                        EventKind::ALL
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                },
                None => EventKind::ALL.to_vec(),
            };
            for kind in kinds {
                println!("{kind}:");
                for field in emporium_schemas::arrow::arrow_schema(kind).fields() {
                    let null = if field.is_nullable() {
                        " (nullable)"
                    } else {
                        ""
                    };
                    println!("  {}: {}{null}", field.name(), field.data_type());
                }
            }
        }
    }
    Ok(())
}
