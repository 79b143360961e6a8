//! `meshctl get object ID`, `meshctl get connector-object CONNECTOR/TYPE/EXTERNAL_ID`,
//! `meshctl lineage ID [--attribute A]...` and `meshctl find --attribute A --value V [--type T]`:
//! the mesh and the management space as the query service answers them (see [`super::client`]
//! for the connection and its errors).

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use mesh_proto::v1;
use serde_json::json;

use super::client::{QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, ListTable, print_document, print_list, print_table, table};

/// `meshctl get …`
#[derive(Debug, Subcommand)]
pub enum GetCommand {
    /// Show a mesh object: its attributes, lifecycle and joined connector objects.
    Object(ObjectArgs),
    /// Show a connector object: its raw attributes and join state.
    ConnectorObject(ConnectorObjectArgs),
}

/// `meshctl get object ID`
#[derive(Debug, Args)]
pub struct ObjectArgs {
    /// The mesh object's id.
    id: String,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// `meshctl get connector-object CONNECTOR/TYPE/EXTERNAL_ID`
#[derive(Debug, Args)]
pub struct ConnectorObjectArgs {
    /// The connector object, as `connector/type/external-id` (the external id may hold `/`).
    key: String,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// `meshctl lineage ID [--attribute A]...`
#[derive(Debug, Args)]
pub struct LineageArgs {
    /// The mesh object's id.
    id: String,
    /// Only this attribute (repeatable; names are case-insensitive).
    #[arg(long = "attribute", short = 'a')]
    attributes: Vec<String>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// `meshctl find --attribute A --value V [--type T]`
#[derive(Debug, Args)]
pub struct FindArgs {
    /// The attribute to compare (case-insensitive).
    #[arg(long, short = 'a')]
    attribute: String,
    /// The value it must equal. Values compare as text, as joins compare them, so `1001` also
    /// finds the number 1001; for a multi-valued attribute one item must equal it.
    #[arg(long)]
    value: String,
    /// Only mesh objects of this type (such as `User`).
    #[arg(long = "type")]
    object_type: Option<String>,
    /// At most this many (default: every match).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl get`.
pub fn run_get(command: GetCommand) -> anyhow::Result<ExitCode> {
    match command {
        GetCommand::Object(args) => block_on(get_object(args))?,
        GetCommand::ConnectorObject(args) => block_on(get_connector_object(args))?,
    }
}

async fn get_mesh_object(
    service: &QueryService,
    id: &str,
    attributes: Vec<String>,
) -> anyhow::Result<v1::GetMeshObjectResponse> {
    let client = service.connect().await?;
    let request = client.request(v1::GetMeshObjectRequest {
        mesh_object_id: id.to_owned(),
        attributes,
    });
    client.answer(client.mesh_query().get_mesh_object(request).await)
}

async fn get_object(args: ObjectArgs) -> anyhow::Result<ExitCode> {
    let response = get_mesh_object(&args.service, &args.id, Vec::new()).await?;
    let object = response
        .mesh_object
        .ok_or_else(|| anyhow!("the query service answered without the mesh object"))?;
    if print_document(args.output, &wire::mesh_object_json(&object))? {
        return Ok(ExitCode::SUCCESS);
    }
    print_mesh_object(&object);
    Ok(ExitCode::SUCCESS)
}

fn print_mesh_object(o: &v1::MeshObject) {
    let links: Vec<String> = o
        .connector_objects
        .iter()
        .map(|r| wire::object_ref(Some(r)))
        .collect();
    print_table(
        &["MESH OBJECT", &o.id],
        &[
            vec!["type".into(), o.object_type.clone()],
            vec!["version".into(), o.version.to_string()],
            vec!["lifecycle".into(), wire::lifecycle(o.lifecycle).into()],
            vec!["rule version".into(), o.rule_version.to_string()],
            vec!["created".into(), wire::time_text(o.created_at.as_ref())],
            vec!["updated".into(), wire::time_text(o.updated_at.as_ref())],
            vec!["joined".into(), links.join(", ")],
        ],
    );
    println!();
    let rows: Vec<Vec<String>> = o
        .attributes
        .iter()
        .map(|(name, v)| vec![name.clone(), wire::value_text(Some(v))])
        .collect();
    print_table(&["ATTRIBUTE", "VALUE"], &rows);
}

/// Runs `meshctl lineage`.
pub fn run_lineage(args: LineageArgs) -> anyhow::Result<ExitCode> {
    block_on(lineage(args))?
}

async fn lineage(args: LineageArgs) -> anyhow::Result<ExitCode> {
    let response = get_mesh_object(&args.service, &args.id, args.attributes.clone()).await?;
    let document = json!({
        "meshObject": response.mesh_object.as_ref().map(wire::mesh_object_json),
        "lineage": response.lineage.iter().map(wire::lineage_json).collect::<Vec<_>>(),
    });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(object) = &response.mesh_object {
        println!(
            "mesh object {} ({}, version {}, {})",
            object.id,
            object.object_type,
            object.version,
            wire::lifecycle(object.lifecycle)
        );
    }
    if response.lineage.is_empty() {
        println!("no attribute matches");
    }
    for attribute in &response.lineage {
        println!();
        print_lineage(attribute);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_lineage(l: &v1::AttributeLineage) {
    println!("{} = {}", l.name, wire::value_text(l.value.as_ref()));
    match (&l.r#override, &l.winner) {
        (Some(pin), _) => println!(
            "  override: {} set by {} at {}: {}",
            wire::value_text(pin.value.as_ref()),
            if pin.actor.is_empty() {
                "?"
            } else {
                &pin.actor
            },
            wire::time_text(pin.set_at.as_ref()),
            pin.reason
        ),
        (None, Some(w)) => println!(
            "  winner: {} by rule {} at confidence {} (event {})",
            wire::source_text(w),
            w.rule,
            w.confidence,
            w.event_id
        ),
        (None, None) => println!("  winner: none (no source contributes a value)"),
    }
    if l.candidates.is_empty() {
        return;
    }
    let rows: Vec<Vec<String>> = l
        .candidates
        .iter()
        .map(|c| {
            vec![
                wire::source_text(c),
                c.rule.clone(),
                c.confidence.to_string(),
                wire::value_text(c.value.as_ref()),
                c.event_id.clone(),
                wire::time_text(c.contributed_at.as_ref()),
            ]
        })
        .collect();
    let header = [
        "CONNECTOR OBJECT",
        "RULE",
        "CONFIDENCE",
        "VALUE",
        "EVENT",
        "TIME",
    ];
    for line in table(&header, &rows) {
        println!("  {line}");
    }
}

/// Runs `meshctl find`.
pub fn run_find(args: FindArgs) -> anyhow::Result<ExitCode> {
    block_on(find(args))?
}

async fn find(args: FindArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    let objects = all_pages(args.limit, |page_token, page_size| {
        let request = client.request(v1::FindMeshObjectsRequest {
            object_type: args.object_type.clone().unwrap_or_default(),
            attribute: args.attribute.clone(),
            value: Some(mesh_model::Value::from(args.value.as_str()).into()),
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.mesh_query().find_mesh_objects(request).await)?;
            Ok((page.mesh_objects, page.next_page_token))
        }
    })
    .await?;
    print_list(
        args.output,
        "meshObjects",
        &objects,
        wire::mesh_object_json,
        &ListTable {
            header: &["MESH OBJECT", "TYPE", "VERSION", "LIFECYCLE", "JOINED"],
            row: &|o| {
                vec![
                    o.id.clone(),
                    o.object_type.clone(),
                    o.version.to_string(),
                    wire::lifecycle(o.lifecycle).to_owned(),
                    o.connector_objects
                        .iter()
                        .map(|r| wire::object_ref(Some(r)))
                        .collect::<Vec<_>>()
                        .join(", "),
                ]
            },
            empty: None,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn get_connector_object(args: ConnectorObjectArgs) -> anyhow::Result<ExitCode> {
    let mut parts = args.key.splitn(3, '/');
    let (Some(connector), Some(object_type), Some(external_id)) =
        (parts.next(), parts.next(), parts.next())
    else {
        anyhow::bail!(
            "{:?} is not CONNECTOR/TYPE/EXTERNAL_ID, such as hr/User/1001",
            args.key
        );
    };
    let client = args.service.connect().await?;
    let request = client.request(v1::GetConnectorObjectRequest {
        object: Some(v1::ConnectorObjectRef {
            connector: connector.to_owned(),
            object_type: object_type.to_owned(),
            external_id: external_id.to_owned(),
        }),
    });
    let response = client.answer(client.mesh_query().get_connector_object(request).await)?;
    let object = response
        .connector_object
        .ok_or_else(|| anyhow!("the query service answered without the connector object"))?;
    if print_document(args.output, &wire::connector_object_json(&object))? {
        return Ok(ExitCode::SUCCESS);
    }
    let join = wire::join_json(object.join.as_ref());
    let join_text = match join["state"].as_str() {
        Some("joined") => format!(
            "joined to {} ({} by {})",
            join["meshObject"].as_str().unwrap_or("?"),
            join["method"].as_str().unwrap_or("?"),
            join["rule"].as_str().unwrap_or("no rule")
        ),
        Some("ambiguous") => format!(
            "ambiguous: rule {} matched {}",
            join["rule"].as_str().unwrap_or("?"),
            join["candidates"]
        ),
        Some(state) => state.to_owned(),
        None => "unknown".to_owned(),
    };
    print_table(
        &[
            "CONNECTOR OBJECT",
            &wire::object_ref(object.object.as_ref()),
        ],
        &[
            vec!["join".into(), join_text],
            vec!["last event".into(), object.last_event_id.clone()],
            vec![
                "last changed".into(),
                wire::time_text(object.last_changed_at.as_ref()),
            ],
            vec!["rule version".into(), object.rule_version.to_string()],
        ],
    );
    println!();
    let rows: Vec<Vec<String>> = object
        .attributes
        .iter()
        .map(|(name, v)| vec![name.clone(), wire::value_text(Some(v))])
        .collect();
    print_table(&["ATTRIBUTE", "VALUE"], &rows);
    Ok(ExitCode::SUCCESS)
}
