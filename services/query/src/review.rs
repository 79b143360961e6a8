//! Review entries: a connector object that correlation left unjoined (a disconnector) or
//! could not place (an ambiguous match), as of its last change.
//!
//! An entry's id is derived from the connector object and the change event that queued it, so
//! it names one state of the object: resolving an entry after the object changed again is
//! refused (the entry is gone; list the queue again).

use mesh_model::{ConnectorObjectRef, EventId};

/// The id of the review entry for `object` as queued by `last_event`.
pub fn entry_id(object: &ConnectorObjectRef, last_event: uuid::Uuid) -> uuid::Uuid {
    let mut name = last_event.as_bytes().to_vec();
    name.extend_from_slice(object.to_string().as_bytes());
    EventId::derive("review", &name).as_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(id: &str) -> ConnectorObjectRef {
        ConnectorObjectRef {
            connector: mesh_model::ConnectorId::parse("hr").unwrap(),
            object_type: mesh_model::ObjectType::parse("User").unwrap(),
            external_id: mesh_model::ExternalId::parse(id).unwrap(),
        }
    }

    #[test]
    fn an_entry_names_one_state_of_one_object() {
        let (object, other) = (object("1"), object("2"));
        let event = uuid::Uuid::from_u128(7);
        assert_eq!(entry_id(&object, event), entry_id(&object, event));
        assert_ne!(entry_id(&object, event), entry_id(&other, event));
        assert_ne!(
            entry_id(&object, event),
            entry_id(&object, uuid::Uuid::from_u128(8))
        );
    }
}
