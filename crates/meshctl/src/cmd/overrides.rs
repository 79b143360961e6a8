//! `meshctl override set ID ATTRIBUTE VALUE` and `meshctl override remove ID ATTRIBUTE`: pin
//! one attribute of one mesh object above every rule, until removed (audited, applied at once;
//! docs/rule-versions.md).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use mesh_model::Value;
use mesh_proto::v1;

use super::client::{Actor, QueryService, block_on};

/// `meshctl override …`
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Pin an attribute to a value.
    Set(SetArgs),
    /// Remove a pin; the rules decide the value again.
    Remove(RemoveArgs),
}

/// `meshctl override set`
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The mesh object's id.
    mesh_object: String,
    /// The attribute (case-insensitive).
    attribute: String,
    /// The value, as text; with --json, a JSON value (number, boolean, list, null).
    value: String,
    /// Read VALUE as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
}

/// `meshctl override remove`
#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The mesh object's id.
    mesh_object: String,
    /// The attribute (case-insensitive).
    attribute: String,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
}

/// Runs `meshctl override`.
pub fn run(command: OverrideCommand) -> anyhow::Result<ExitCode> {
    match command {
        OverrideCommand::Set(args) => block_on(set(args))?,
        OverrideCommand::Remove(args) => block_on(remove(args))?,
    }
}

fn value(text: &str, json: bool) -> anyhow::Result<Value> {
    if !json {
        return Ok(Value::from(text));
    }
    let parsed: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("VALUE is not JSON ({e}); drop --json to pin text"))?;
    mesh_store::json::value_from_json(&parsed)
        .map_err(|e| anyhow::anyhow!("VALUE cannot be a mesh value: {e}"))
}

async fn set(args: SetArgs) -> anyhow::Result<ExitCode> {
    let value = value(&args.value, args.json)?;
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let request = client.request(v1::SetOverrideRequest {
        mesh_object_id: args.mesh_object.clone(),
        attribute: args.attribute.clone(),
        value: Some(value.into()),
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.mesh_query().set_override(request).await)?;
    println!(
        "{} of {} pinned; the mesh object is at version {}",
        args.attribute, args.mesh_object, answer.mesh_object_version
    );
    Ok(ExitCode::SUCCESS)
}

async fn remove(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let request = client.request(v1::RemoveOverrideRequest {
        mesh_object_id: args.mesh_object.clone(),
        attribute: args.attribute.clone(),
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.mesh_query().remove_override(request).await)?;
    if answer.removed {
        println!(
            "{} of {} is decided by the rules again (version {})",
            args.attribute, args.mesh_object, answer.mesh_object_version
        );
    } else {
        println!("{} of {} was not pinned", args.attribute, args.mesh_object);
    }
    Ok(ExitCode::SUCCESS)
}
