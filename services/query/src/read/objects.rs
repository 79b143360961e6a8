//! Mesh objects (with lineage), the search by attribute value, and connector objects.

use std::collections::{BTreeMap, BTreeSet};

use mesh_engine::join_key;
use mesh_model::{AttributeName, ConnectorObjectRef, MeshObjectId, ObjectType, Value};
use mesh_proto::v1;
use mesh_store::pipeline::{self, StoredLink};
use mesh_store::query::{self as stored, AttributeSearch, StoredMeshObject};
use sqlx::PgConnection;
use tonic::Status;

use super::{done, filter, lineage, snapshot};
use crate::{Query, page, status};

/// `GetMeshObject`: the mesh object and the lineage of its attributes ([`lineage`]).
///
/// `rule_version` is the version flow last resolved the object under; the candidates are
/// recomputed under the version in force (the same once flow's sweep of a new version is done).
pub async fn get_mesh_object(
    query: &Query,
    request: v1::GetMeshObjectRequest,
) -> Result<v1::GetMeshObjectResponse, Status> {
    let id = MeshObjectId::from_uuid(status::uuid(&request.mesh_object_id, "mesh_object_id")?);
    let only = attribute_names(&request.attributes)?;
    let rules = query.rules.current();
    let ids = BTreeSet::from([id]);
    let mut tx = snapshot(&query.pool).await?;
    let object = stored::mesh_objects(&mut tx, &ids)
        .await
        .map_err(|e| status::store(&e))?
        .pop()
        .ok_or_else(|| {
            Status::not_found(format!(
                "mesh object {id} does not exist; search by attribute with `meshctl find`"
            ))
        })?;
    let links = pipeline::links(&mut tx, &ids)
        .await
        .map_err(|e| status::store(&e))?
        .remove(&id)
        .unwrap_or_default();
    let overrides = stored::overrides(&mut tx, id)
        .await
        .map_err(|e| status::store(&e))?;
    let rule_version = object.rule_version;
    done(tx).await?;
    let lineage = lineage::explain(&lineage::Explain {
        rules: &rules,
        object: &object,
        links: &links,
        overrides: &overrides,
        rule_version,
        only: &only,
    });
    Ok(v1::GetMeshObjectResponse {
        mesh_object: Some(mesh_object_pb(&object, &links, rule_version)),
        lineage,
    })
}

/// The attributes a lineage is restricted to; empty means all.
fn attribute_names(names: &[String]) -> Result<BTreeSet<AttributeName>, Status> {
    names
        .iter()
        .map(|name| {
            AttributeName::parse(name.trim()).map_err(|e| {
                Status::invalid_argument(format!(
                    "attributes: {name:?} is not an attribute name: {e}"
                ))
            })
        })
        .collect()
}

/// A stored mesh object on the wire. `updated_at` is when flow last wrote it (the store keeps
/// the wall-clock time of the write, not the causing event's time).
pub(super) fn mesh_object_pb(
    object: &StoredMeshObject,
    links: &BTreeMap<ConnectorObjectRef, StoredLink>,
    rule_version: u64,
) -> v1::MeshObject {
    let state = &object.state;
    v1::MeshObject {
        id: state.id.to_string(),
        object_type: state.object_type.to_string(),
        version: state.version,
        lifecycle: v1::LifecycleState::from(state.lifecycle).into(),
        attributes: mesh_proto::attributes_to_pb(state.attributes.clone())
            .into_iter()
            .collect(),
        connector_objects: links
            .iter()
            .filter(|(_, link)| link.linked)
            .map(|(object, _)| v1::ConnectorObjectRef::from(object.clone()))
            .collect(),
        created_at: Some(status::timestamp(object.created_at)),
        updated_at: Some(status::timestamp(object.updated_at)),
        rule_version,
    }
}

/// `FindMeshObjects`: mesh objects whose attribute equals a value, in id order.
///
/// Values compare by join key (the text of a scalar, as correlation compares them), so `1001`
/// finds `"1001"`. Where a join rule of the rule set in force targets the attribute, the
/// join-key index answers (`mesh_attributes`, kept by flow for join targets); elsewhere the
/// mesh objects of the type are scanned (see [`mesh_store::query::find_mesh_objects`]), which
/// also matches one item of a multi-valued attribute. Without `object_type` the search covers
/// the object types of the rule set in force.
pub async fn find_mesh_objects(
    query: &Query,
    request: v1::FindMeshObjectsRequest,
) -> Result<v1::FindMeshObjectsResponse, Status> {
    let name = AttributeName::parse(request.attribute.trim()).map_err(|e| {
        Status::invalid_argument(format!(
            "attribute {:?} is not an attribute name: {e}",
            request.attribute
        ))
    })?;
    let value = Value::try_from(
        request
            .value
            .ok_or_else(|| Status::invalid_argument("value is required"))?,
    )
    .map_err(|e| Status::invalid_argument(format!("value: {e}")))?;
    let key = join_key(&value).ok_or_else(|| {
        Status::invalid_argument(
            "value must be a non-empty text, number, boolean or time: null, lists and empty \
             text never match",
        )
    })?;
    let object_type = filter(&request.object_type)
        .map(ObjectType::parse)
        .transpose()
        .map_err(|e| Status::invalid_argument(format!("object_type: {e}")))?;
    let after = page::parse(&request.page_token, "find", 1)?
        .map(|key| MeshObjectId::parse(key[0]).map_err(|_| page::invalid()))
        .transpose()?;
    let size = query.page_size(request.page_size);

    let rules = query.rules.current();
    let types: Vec<ObjectType> = match object_type {
        Some(t) => vec![t],
        None => rules.mesh_object_types().into_iter().collect(),
    };
    let (indexed, scanned): (Vec<&ObjectType>, Vec<&ObjectType>) = types
        .iter()
        .partition(|t| rules.is_join_target(t, name.key()));
    let indexed: Vec<&str> = indexed.iter().map(|t| t.as_str()).collect();
    let scanned: Vec<&str> = scanned.iter().map(|t| t.as_str()).collect();

    let mut tx = snapshot(&query.pool).await?;
    let ids = stored::find_mesh_objects(
        &mut tx,
        &AttributeSearch {
            indexed_types: &indexed,
            scanned_types: &scanned,
            name: name.key(),
            key: &key,
            after,
            limit: page::fetch_limit(size),
        },
    )
    .await
    .map_err(|e| status::store(&e))?;
    let (ids, next_page_token) = page::finish(ids, size, "find", ToString::to_string);
    let mesh_objects = mesh_objects_pb(&mut tx, ids).await?;
    done(tx).await?;
    Ok(v1::FindMeshObjectsResponse {
        mesh_objects,
        next_page_token,
    })
}

/// Reads mesh objects `ids` with their links, in id order, as on the wire.
async fn mesh_objects_pb(
    conn: &mut PgConnection,
    ids: Vec<MeshObjectId>,
) -> Result<Vec<v1::MeshObject>, Status> {
    let ids: BTreeSet<MeshObjectId> = ids.into_iter().collect();
    let objects = stored::mesh_objects(conn, &ids)
        .await
        .map_err(|e| status::store(&e))?;
    let mut links = pipeline::links(conn, &ids)
        .await
        .map_err(|e| status::store(&e))?;
    Ok(objects
        .iter()
        .map(|object| {
            let id = object.state.id;
            mesh_object_pb(
                object,
                &links.remove(&id).unwrap_or_default(),
                object.rule_version,
            )
        })
        .collect())
}

/// `GetConnectorObject`: its raw attributes and join state.
pub async fn get_connector_object(
    query: &Query,
    request: v1::GetConnectorObjectRequest,
) -> Result<v1::GetConnectorObjectResponse, Status> {
    let object = ConnectorObjectRef::try_from(
        request
            .object
            .ok_or_else(|| Status::invalid_argument("object is required"))?,
    )
    .map_err(|e| Status::invalid_argument(format!("object: {e}")))?;
    let mut conn = query.pool.acquire().await.map_err(status::sql)?;
    let record = stored::connector_object(&mut conn, &object)
        .await
        .map_err(|e| status::store(&e))?
        .ok_or_else(|| {
            Status::not_found(format!(
                "connector object {object} does not exist: correlation has not seen it"
            ))
        })?;
    let stored = record.stored;
    Ok(v1::GetConnectorObjectResponse {
        connector_object: Some(v1::ConnectorObject {
            object: Some(record.object.into()),
            attributes: mesh_proto::attributes_to_pb(stored.attributes)
                .into_iter()
                .collect(),
            join: Some(stored.join.into()),
            last_event_id: stored.last_event.to_string(),
            last_changed_at: Some(status::timestamp(stored.last_event_time)),
            rule_version: record.rule_version,
        }),
    })
}
