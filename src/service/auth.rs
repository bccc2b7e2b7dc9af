//! The caller of a request and its rights (DESIGN "Who may do what").
//!
//! An [`Actor`] is built once at the HTTP boundary from a verified token (or is anonymous) and
//! every rule below asks it; nothing else decides who may see internal data.

use std::collections::BTreeSet;

use crate::domain::catalog::{HotelId, PartnerId};

/// A right granted by a token's `scope` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everything, for every hotel; internal fields.
    Admin,
    /// Main image, pins, uploads and internal reads for the hotels in `hotel_ids`.
    Hotelier,
    /// `importImages` for the token's partner.
    Import,
    /// `classifyImages`.
    Classify,
}

impl Scope {
    /// The scope named in a token, e.g. `images:admin`; unknown names are ignored by callers.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "images:admin" => Some(Scope::Admin),
            "images:hotelier" => Some(Scope::Hotelier),
            "images:import" => Some(Scope::Import),
            "images:classify" => Some(Scope::Classify),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Admin => "images:admin",
            Scope::Hotelier => "images:hotelier",
            Scope::Import => "images:import",
            Scope::Classify => "images:classify",
        }
    }
}

/// Who is calling. The default is anonymous, which may read public data only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// The token's `sub`; `None` for anonymous callers.
    pub subject: Option<String>,
    pub scopes: BTreeSet<Scope>,
    /// Hotels a hotelier token speaks for.
    pub hotel_ids: BTreeSet<HotelId>,
    /// The partner an import token speaks for.
    pub partner_id: Option<PartnerId>,
}

/// Why a caller may not do something: it did not authenticate at all (clients answer with
/// their login flow: `UNAUTHENTICATED`), or it did, without the scope or the hotel
/// (`FORBIDDEN`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("authentication required")]
    Unauthenticated,
    #[error("not allowed for this caller")]
    Forbidden,
}

impl Refused {
    /// The refusal `actor` gets for something it may not do.
    pub fn of(actor: &Actor) -> Self {
        if actor.is_anonymous() {
            Refused::Unauthenticated
        } else {
            Refused::Forbidden
        }
    }
}

impl Actor {
    pub fn anonymous() -> Self {
        Self::default()
    }

    /// No token: nothing is known of the caller.
    pub fn is_anonymous(&self) -> bool {
        *self == Self::default()
    }

    /// `Ok` when `allowed`, else the refusal this actor gets.
    pub fn require(&self, allowed: bool) -> Result<(), Refused> {
        if allowed {
            Ok(())
        } else {
            Err(Refused::of(self))
        }
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }

    pub fn is_admin(&self) -> bool {
        self.has(Scope::Admin)
    }

    /// Uploading at all (for some hotel): admins and hoteliers. Checked before an upload's body
    /// is read; which hotels a hotelier may upload for is checked once the request is parsed.
    pub fn may_upload(&self) -> bool {
        self.is_admin() || self.has(Scope::Hotelier)
    }

    /// Changing a hotel's main image or pins, uploading for it: admins, and its hoteliers.
    pub fn may_manage_hotel(&self, hotel: HotelId) -> bool {
        self.may_read_hotel_internals(hotel)
    }

    /// Internal fields of a hotel: admins, and hoteliers of that hotel.
    pub fn may_read_hotel_internals(&self, hotel: HotelId) -> bool {
        self.is_admin() || (self.has(Scope::Hotelier) && self.hotel_ids.contains(&hotel))
    }

    /// Internal fields of an image (provenance, legacy IDs, every hotel showing it): admins.
    /// An image can be shared between hotels, so a hotelier's rights do not extend to it.
    pub fn may_read_image_internals(&self) -> bool {
        self.is_admin()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hotel(id: i64) -> HotelId {
        HotelId::new(id).unwrap()
    }

    #[test]
    fn internal_reads_are_denied_by_default_and_granted_by_scope() {
        let anonymous = Actor::anonymous();
        let admin = Actor {
            scopes: [Scope::Admin].into(),
            ..Actor::default()
        };
        let hotelier = Actor {
            scopes: [Scope::Hotelier].into(),
            hotel_ids: [hotel(1)].into(),
            ..Actor::default()
        };
        let importer = Actor {
            scopes: [Scope::Import].into(),
            ..Actor::default()
        };
        let cases = [
            (&anonymous, 1, false, false),
            (&admin, 1, true, true),
            (&admin, 2, true, true),
            (&hotelier, 1, true, false),
            (&hotelier, 2, false, false),
            (&importer, 1, false, false),
        ];
        for (actor, h, hotel_internals, image_internals) in cases {
            assert_eq!(
                actor.may_read_hotel_internals(hotel(h)),
                hotel_internals,
                "{actor:?} {h}"
            );
            assert_eq!(
                actor.may_read_image_internals(),
                image_internals,
                "{actor:?}"
            );
        }
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in [
            Scope::Admin,
            Scope::Hotelier,
            Scope::Import,
            Scope::Classify,
        ] {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(Scope::parse("images:root"), None);
    }
}
