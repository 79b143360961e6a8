//! The `Mesh-Schema` name of each event, and encoding and decoding of domain events.
//!
//! Every NATS message carries a `Mesh-Schema` header naming its protobuf message
//! (`identitymesh.v1.ChangeEvent`), so a consumer, the DLQ and `meshctl` can tell what the
//! payload is without guessing. [`MeshMessage::SCHEMA`] gives it for a generated type;
//! [`WireEvent::SCHEMA`] gives it for a domain event, along with [`WireEvent::into_wire`] and
//! [`WireEvent::from_wire`].

use prost::Message as _;

use crate::ConversionError;
use crate::v1;

/// A protobuf message that travels on a JetStream stream as an event.
pub trait MeshMessage: prost::Message + prost::Name + Default {
    /// The value of the `Mesh-Schema` header: the message's full protobuf name, such as
    /// `identitymesh.v1.ChangeEvent`. Equal to `prost::Name::full_name()`, without allocating.
    const SCHEMA: &'static str;
}

/// A domain event of `mesh-model` with a wire form.
///
/// ```
/// use mesh_proto::WireEvent;
/// assert_eq!(mesh_model::ChangeEvent::SCHEMA, "identitymesh.v1.ChangeEvent");
/// ```
pub trait WireEvent: Sized {
    /// The generated protobuf message.
    type Message: MeshMessage + From<Self> + TryInto<Self, Error = ConversionError>;

    /// The value of the `Mesh-Schema` header.
    const SCHEMA: &'static str = <Self::Message as MeshMessage>::SCHEMA;

    /// Encodes the event as protobuf bytes. Encoding is deterministic: the same event always
    /// gives the same bytes (map fields are encoded in key order).
    fn into_wire(self) -> Vec<u8> {
        Self::Message::from(self).encode_to_vec()
    }

    /// Decodes protobuf bytes and converts them to the event, checking every field.
    fn from_wire(bytes: &[u8]) -> Result<Self, DecodeError> {
        let message = Self::Message::decode(bytes).map_err(|error| DecodeError::Protobuf {
            schema: Self::SCHEMA,
            error,
        })?;
        Ok(message.try_into()?)
    }
}

/// Why bytes could not become a domain event.
///
/// Like [`ConversionError`], the message is complete on one line (it becomes a dead letter's
/// reason), so the decoder's error is part of it rather than a `source()`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not a valid protobuf encoding of the message.
    #[error("payload is not a valid {schema} protobuf message: {error}")]
    Protobuf {
        /// The expected message.
        schema: &'static str,
        /// The protobuf decoder's error.
        error: prost::DecodeError,
    },
    /// The message decoded but a field broke the contract.
    #[error(transparent)]
    Conversion(#[from] ConversionError),
}

macro_rules! events {
    ($($name:ident),+ $(,)?) => {
        $(
            impl MeshMessage for v1::$name {
                const SCHEMA: &'static str = concat!("identitymesh.v1.", stringify!($name));
            }

            impl WireEvent for mesh_model::$name {
                type Message = v1::$name;
            }
        )+

        /// The `Mesh-Schema` names of every event of the contract, in stream order.
        pub const EVENT_SCHEMAS: &[&str] = &[
            $(concat!("identitymesh.v1.", stringify!($name)),)+
        ];
    };
}

events!(
    ChangeEvent,
    CorrelatedChange,
    MeshObjectChanged,
    ExportCommand,
    ExportResult,
    RiskSignal,
    DeadLetter,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_matches_full_name<M: MeshMessage>() {
        assert_eq!(M::SCHEMA, M::full_name());
        assert_eq!(M::type_url(), format!("type.googleapis.com/{}", M::SCHEMA));
    }

    #[test]
    fn schema_is_the_full_protobuf_name() {
        schema_matches_full_name::<v1::ChangeEvent>();
        schema_matches_full_name::<v1::CorrelatedChange>();
        schema_matches_full_name::<v1::MeshObjectChanged>();
        schema_matches_full_name::<v1::ExportCommand>();
        schema_matches_full_name::<v1::ExportResult>();
        schema_matches_full_name::<v1::RiskSignal>();
        schema_matches_full_name::<v1::DeadLetter>();
        assert_eq!(EVENT_SCHEMAS.len(), 7);
        assert_eq!(mesh_model::DeadLetter::SCHEMA, "identitymesh.v1.DeadLetter");
    }

    #[test]
    fn garbage_is_a_protobuf_error_naming_the_schema() {
        let err = mesh_model::ChangeEvent::from_wire(&[0xff, 0xff, 0xff]).unwrap_err();
        assert!(matches!(err, DecodeError::Protobuf { .. }));
        assert!(
            err.to_string().starts_with(
                "payload is not a valid identitymesh.v1.ChangeEvent protobuf message: "
            ),
            "{err}"
        );
    }

    #[test]
    fn an_empty_payload_is_a_conversion_error_naming_the_first_missing_field() {
        let err = mesh_model::ChangeEvent::from_wire(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ChangeEvent.event_id: required field is missing"
        );
    }
}
