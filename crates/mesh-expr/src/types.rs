//! Static types: the set of value kinds an expression may produce.
//!
//! The checker infers a [`Ty`] for every expression: a literal has one kind, an attribute has
//! whatever the schema says (plus null, since any attribute may be absent) or any kind. A
//! function argument or an operand is refused at compile time only when its set and the set
//! the function accepts do not meet: the program could never succeed there. Anything that
//! merely *might* fail is left to the evaluator, which fails with an [`crate::EvalError`].

use mesh_model::ValueKind;

/// A set of [`ValueKind`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Ty(u8);

impl Ty {
    pub(crate) const NEVER: Ty = Ty(0);
    pub(crate) const NULL: Ty = Ty(1);
    pub(crate) const BOOL: Ty = Ty(1 << 1);
    pub(crate) const INTEGER: Ty = Ty(1 << 2);
    pub(crate) const DECIMAL: Ty = Ty(1 << 3);
    pub(crate) const STRING: Ty = Ty(1 << 4);
    pub(crate) const TIMESTAMP: Ty = Ty(1 << 5);
    pub(crate) const LIST: Ty = Ty(1 << 6);
    pub(crate) const ANY: Ty = Ty(0x7f);
    pub(crate) const NUMBER: Ty = Ty(Self::INTEGER.0 | Self::DECIMAL.0);
    /// What text functions turn into text: everything but a list.
    pub(crate) const SCALAR: Ty = Ty(Self::ANY.0 & !Self::LIST.0);

    /// In the order messages list them: null last, since "string or null" reads naturally.
    const KINDS: [(Ty, ValueKind); 7] = [
        (Self::BOOL, ValueKind::Bool),
        (Self::INTEGER, ValueKind::Integer),
        (Self::DECIMAL, ValueKind::Decimal),
        (Self::STRING, ValueKind::String),
        (Self::TIMESTAMP, ValueKind::Timestamp),
        (Self::LIST, ValueKind::List),
        (Self::NULL, ValueKind::Null),
    ];

    pub(crate) const fn of(kind: ValueKind) -> Ty {
        match kind {
            ValueKind::Null => Self::NULL,
            ValueKind::Bool => Self::BOOL,
            ValueKind::Integer => Self::INTEGER,
            ValueKind::Decimal => Self::DECIMAL,
            ValueKind::String => Self::STRING,
            ValueKind::Timestamp => Self::TIMESTAMP,
            ValueKind::List => Self::LIST,
        }
    }

    pub(crate) const fn or(self, other: Ty) -> Ty {
        Ty(self.0 | other.0)
    }

    pub(crate) const fn without(self, other: Ty) -> Ty {
        Ty(self.0 & !other.0)
    }

    /// Returns true when the two sets share a kind.
    pub(crate) const fn meets(self, other: Ty) -> bool {
        self.0 & other.0 != 0
    }

    pub(crate) const fn may_be_null(self) -> bool {
        self.meets(Self::NULL)
    }

    /// Returns true when a value of this type can never be used where `accepts` is required.
    ///
    /// Null is judged on its own: a possibly-absent string attribute passed where a list is
    /// required is refused, even though the call would work whenever the attribute is absent,
    /// because then it could only ever work by accident.
    pub(crate) const fn never_fits(self, accepts: Ty) -> bool {
        let present = self.without(Self::NULL);
        if present.0 == 0 {
            !accepts.may_be_null()
        } else {
            !present.meets(accepts)
        }
    }

    /// Iterates over the kinds in the set.
    pub(crate) fn kinds(self) -> impl Iterator<Item = ValueKind> {
        Self::KINDS
            .into_iter()
            .filter(move |(ty, _)| self.meets(*ty))
            .map(|(_, kind)| kind)
    }

    /// Describes the set for messages and docs: `any value`, `string or null`, …
    pub(crate) fn describe(self) -> String {
        if self == Self::ANY {
            return "any value".to_owned();
        }
        if self == Self::SCALAR {
            return "any value but a list".to_owned();
        }
        let names: Vec<&str> = self.kinds().map(ValueKind::as_str).collect();
        match names.as_slice() {
            [] => "nothing".to_owned(),
            [one] => (*one).to_owned(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_sets_in_words() {
        assert_eq!(Ty::STRING.or(Ty::NULL).describe(), "string or null");
        assert_eq!(Ty::ANY.describe(), "any value");
        assert_eq!(
            Ty::NUMBER.or(Ty::TIMESTAMP).describe(),
            "integer, decimal or timestamp"
        );
        assert!(Ty::ANY.without(Ty::LIST).meets(Ty::STRING));
        assert!(!Ty::NEVER.meets(Ty::ANY));
    }
}
