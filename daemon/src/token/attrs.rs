//! Object attribute rules as data (PKCS#11 v3.0 §4, the attribute tables):
//! one table per object class and key type, each row naming the attribute,
//! its value kind and its rules. The object layer checks templates against
//! these tables instead of scattered `if`s.

use p11kms_protocol::{
    vendor, Template as Nested, CKA_DERIVE_TEMPLATE, CKA_UNWRAP_TEMPLATE, CKA_WRAP_TEMPLATE,
};
use pkcs11_sys as ck;

/// How an attribute's value is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `CK_BBOOL`, one byte 0 or 1.
    Bool,
    /// `CK_ULONG`, 8 little-endian bytes.
    Ulong,
    /// Any byte string (labels, ids, DER).
    Bytes,
    /// `CK_DATE`: empty or 8 ASCII digits.
    Date,
    /// Array of `CK_MECHANISM_TYPE` (multiple of 8 bytes).
    UlongArray,
    /// A nested template (`CKA_WRAP_TEMPLATE` and friends): a
    /// [`p11kms_protocol::Template`] whose attributes are known here, each
    /// encoded as its own kind, none a template itself.
    Template,
}

/// Rule flags.
pub mod f {
    /// Must be present in a `C_CreateObject` template.
    pub const REQUIRED: u16 = 1 << 0;
    /// Never settable by a caller, at creation or later (the token computes
    /// it): `CKR_ATTRIBUTE_READ_ONLY`.
    pub const TOKEN_ONLY: u16 = 1 << 1;
    /// Settable at creation/copy only, never by `C_SetAttributeValue`.
    pub const FIXED: u16 = 1 << 2;
    /// Value is secret: readable only when the object is not sensitive and
    /// is extractable.
    pub const SECRET: u16 = 1 << 3;
    /// May only change from FALSE to TRUE after creation or in a copy
    /// (`CKA_SENSITIVE`, `CKA_WRAP_WITH_TRUSTED`, `CKA_TRUSTED`).
    pub const ONLY_TO_TRUE: u16 = 1 << 4;
    /// May only change from TRUE to FALSE after creation or in a copy
    /// (`CKA_EXTRACTABLE`, `CKA_COPYABLE`, and every usage attribute: a key
    /// that wrapped a sensitive key must never learn to decrypt later —
    /// docs/security.md).
    pub const ONLY_TO_FALSE: u16 = 1 << 5;
    /// Only the SO may set it to TRUE (`CKA_TRUSTED`).
    pub const SO_ONLY_TRUE: u16 = 1 << 6;
    /// Not allowed in `C_CreateObject` templates (`CKA_VALUE_LEN` of secret
    /// keys): `CKR_TEMPLATE_INCONSISTENT`.
    pub const NOT_ON_CREATE: u16 = 1 << 7;
    /// An array that may only lose elements after creation
    /// (`CKA_ALLOWED_MECHANISMS`: a key's uses only ever narrow).
    pub const ONLY_NARROWS: u16 = 1 << 8;
}

/// One row of an attribute table.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub ty: u64,
    pub kind: Kind,
    pub flags: u16,
}

const fn r(ty: u64, kind: Kind, flags: u16) -> Rule {
    Rule { ty, kind, flags }
}

use Kind::*;

/// Every object (storage objects, §4.4).
pub const COMMON: &[Rule] = &[
    r(ck::CKA_CLASS, Ulong, f::REQUIRED | f::FIXED),
    r(ck::CKA_TOKEN, Bool, f::FIXED),
    r(ck::CKA_PRIVATE, Bool, f::FIXED),
    r(ck::CKA_MODIFIABLE, Bool, f::FIXED),
    r(ck::CKA_LABEL, Bytes, 0),
    r(ck::CKA_COPYABLE, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_DESTROYABLE, Bool, 0),
    r(ck::CKA_UNIQUE_ID, Bytes, f::TOKEN_ONLY),
];

/// `CKO_DATA` (§4.5).
pub const DATA: &[Rule] = &[
    r(ck::CKA_APPLICATION, Bytes, 0),
    r(ck::CKA_OBJECT_ID, Bytes, 0),
    r(ck::CKA_VALUE, Bytes, 0),
];

/// Every certificate (§4.6.2).
pub const CERTIFICATE: &[Rule] = &[
    r(ck::CKA_CERTIFICATE_TYPE, Ulong, f::REQUIRED | f::FIXED),
    r(ck::CKA_TRUSTED, Bool, f::SO_ONLY_TRUE),
    r(ck::CKA_CERTIFICATE_CATEGORY, Ulong, 0),
    r(ck::CKA_CHECK_VALUE, Bytes, 0),
    r(ck::CKA_START_DATE, Date, 0),
    r(ck::CKA_END_DATE, Date, 0),
    r(ck::CKA_PUBLIC_KEY_INFO, Bytes, 0),
];

/// X.509 public-key certificates (§4.6.3).
pub const X509: &[Rule] = &[
    r(ck::CKA_SUBJECT, Bytes, f::REQUIRED),
    r(ck::CKA_ID, Bytes, 0),
    r(ck::CKA_ISSUER, Bytes, 0),
    r(ck::CKA_SERIAL_NUMBER, Bytes, 0),
    r(ck::CKA_VALUE, Bytes, f::REQUIRED | f::FIXED),
    r(ck::CKA_URL, Bytes, 0),
    r(ck::CKA_HASH_OF_SUBJECT_PUBLIC_KEY, Bytes, 0),
    r(ck::CKA_HASH_OF_ISSUER_PUBLIC_KEY, Bytes, 0),
    r(ck::CKA_JAVA_MIDP_SECURITY_DOMAIN, Ulong, 0),
    r(ck::CKA_NAME_HASH_ALGORITHM, Ulong, 0),
];

/// Every key (§4.7), plus p11kms's read-only KMS attributes.
pub const KEY: &[Rule] = &[
    r(ck::CKA_KEY_TYPE, Ulong, f::REQUIRED | f::FIXED),
    r(ck::CKA_ID, Bytes, 0),
    r(ck::CKA_START_DATE, Date, 0),
    r(ck::CKA_END_DATE, Date, 0),
    r(ck::CKA_DERIVE, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_LOCAL, Bool, f::TOKEN_ONLY),
    r(ck::CKA_KEY_GEN_MECHANISM, Ulong, f::TOKEN_ONLY),
    r(ck::CKA_ALLOWED_MECHANISMS, UlongArray, f::ONLY_NARROWS),
    r(CKA_DERIVE_TEMPLATE, Template, f::FIXED),
    r(vendor::CKA_P11KMS_ORIGIN, Ulong, f::TOKEN_ONLY),
    r(vendor::CKA_P11KMS_KEY_STATE, Ulong, f::TOKEN_ONLY),
    r(vendor::CKA_P11KMS_KEY_VERSION, Ulong, f::TOKEN_ONLY),
    r(vendor::CKA_P11KMS_DEFAULT_KEY, Bool, f::TOKEN_ONLY),
    r(vendor::CKA_P11KMS_SERVICE_KEY, Bool, f::TOKEN_ONLY),
    r(vendor::CKA_P11KMS_KEY_ID, Bytes, f::TOKEN_ONLY),
];

/// Secret keys (§4.10).
pub const SECRET_KEY: &[Rule] = &[
    r(ck::CKA_SENSITIVE, Bool, f::ONLY_TO_TRUE),
    r(ck::CKA_ENCRYPT, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_DECRYPT, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_SIGN, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_VERIFY, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_WRAP, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_UNWRAP, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_EXTRACTABLE, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_ALWAYS_SENSITIVE, Bool, f::TOKEN_ONLY),
    r(ck::CKA_NEVER_EXTRACTABLE, Bool, f::TOKEN_ONLY),
    r(ck::CKA_CHECK_VALUE, Bytes, f::TOKEN_ONLY),
    r(CKA_WRAP_TEMPLATE, Template, f::FIXED),
    r(CKA_UNWRAP_TEMPLATE, Template, f::FIXED),
    r(ck::CKA_WRAP_WITH_TRUSTED, Bool, f::ONLY_TO_TRUE),
    r(ck::CKA_TRUSTED, Bool, f::SO_ONLY_TRUE | f::ONLY_TO_TRUE),
    r(ck::CKA_VALUE, Bytes, f::REQUIRED | f::SECRET | f::FIXED),
    r(ck::CKA_VALUE_LEN, Ulong, f::FIXED | f::NOT_ON_CREATE),
];

/// Public keys (§4.8).
pub const PUBLIC_KEY: &[Rule] = &[
    r(ck::CKA_SUBJECT, Bytes, 0),
    r(ck::CKA_ENCRYPT, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_VERIFY, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_VERIFY_RECOVER, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_WRAP, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_TRUSTED, Bool, f::SO_ONLY_TRUE | f::ONLY_TO_TRUE),
    r(ck::CKA_PUBLIC_KEY_INFO, Bytes, f::FIXED),
    r(CKA_WRAP_TEMPLATE, Template, f::FIXED),
];

/// Private keys (§4.9).
pub const PRIVATE_KEY: &[Rule] = &[
    r(ck::CKA_SUBJECT, Bytes, 0),
    r(ck::CKA_SENSITIVE, Bool, f::ONLY_TO_TRUE),
    r(ck::CKA_DECRYPT, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_SIGN, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_SIGN_RECOVER, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_UNWRAP, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_EXTRACTABLE, Bool, f::ONLY_TO_FALSE),
    r(ck::CKA_ALWAYS_SENSITIVE, Bool, f::TOKEN_ONLY),
    r(ck::CKA_NEVER_EXTRACTABLE, Bool, f::TOKEN_ONLY),
    r(ck::CKA_WRAP_WITH_TRUSTED, Bool, f::ONLY_TO_TRUE),
    r(ck::CKA_ALWAYS_AUTHENTICATE, Bool, f::FIXED),
    r(ck::CKA_PUBLIC_KEY_INFO, Bytes, f::FIXED),
    r(CKA_UNWRAP_TEMPLATE, Template, f::FIXED),
];

/// RSA key components (§6.1.2, §6.1.3).
pub const RSA_PUBLIC: &[Rule] = &[
    r(ck::CKA_MODULUS, Bytes, f::REQUIRED | f::FIXED),
    r(ck::CKA_MODULUS_BITS, Ulong, f::FIXED),
    r(ck::CKA_PUBLIC_EXPONENT, Bytes, f::REQUIRED | f::FIXED),
];
pub const RSA_PRIVATE: &[Rule] = &[
    r(ck::CKA_MODULUS, Bytes, f::REQUIRED | f::FIXED),
    r(ck::CKA_PUBLIC_EXPONENT, Bytes, f::FIXED),
    r(
        ck::CKA_PRIVATE_EXPONENT,
        Bytes,
        f::REQUIRED | f::FIXED | f::SECRET,
    ),
    r(ck::CKA_PRIME_1, Bytes, f::FIXED | f::SECRET),
    r(ck::CKA_PRIME_2, Bytes, f::FIXED | f::SECRET),
    r(ck::CKA_EXPONENT_1, Bytes, f::FIXED | f::SECRET),
    r(ck::CKA_EXPONENT_2, Bytes, f::FIXED | f::SECRET),
    r(ck::CKA_COEFFICIENT, Bytes, f::FIXED | f::SECRET),
];

/// EC / Edwards / Montgomery key components (§6.3).
pub const EC_PUBLIC: &[Rule] = &[
    r(ck::CKA_EC_PARAMS, Bytes, f::REQUIRED | f::FIXED),
    r(ck::CKA_EC_POINT, Bytes, f::REQUIRED | f::FIXED),
];
pub const EC_PRIVATE: &[Rule] = &[
    r(ck::CKA_EC_PARAMS, Bytes, f::REQUIRED | f::FIXED),
    r(ck::CKA_VALUE, Bytes, f::REQUIRED | f::FIXED | f::SECRET),
];

/// The tables that apply to an object of `class` and `key_type`
/// (`key_type` ignored for non-keys). `None` for a class p11kms does not
/// store (`CKR_TEMPLATE_INCONSISTENT` / `CKR_ATTRIBUTE_VALUE_INVALID`).
pub fn tables(
    class: u64,
    key_type: Option<u64>,
    cert_type: Option<u64>,
) -> Option<Vec<&'static [Rule]>> {
    let mut t: Vec<&'static [Rule]> = vec![COMMON];
    match class {
        ck::CKO_DATA => t.push(DATA),
        ck::CKO_CERTIFICATE => {
            t.push(CERTIFICATE);
            match cert_type {
                Some(ck::CKC_X_509) | None => t.push(X509),
                Some(_) => return None,
            }
        }
        ck::CKO_SECRET_KEY => {
            t.push(KEY);
            t.push(SECRET_KEY);
        }
        ck::CKO_PUBLIC_KEY => {
            t.push(KEY);
            t.push(PUBLIC_KEY);
            match key_type {
                Some(ck::CKK_RSA) => t.push(RSA_PUBLIC),
                Some(ck::CKK_EC)
                | Some(ck::CKK_EC_EDWARDS)
                | Some(ck::CKK_EC_MONTGOMERY)
                | Some(vendor::CKK_SM2) => t.push(EC_PUBLIC),
                _ => {}
            }
        }
        ck::CKO_PRIVATE_KEY => {
            t.push(KEY);
            t.push(PRIVATE_KEY);
            match key_type {
                Some(ck::CKK_RSA) => t.push(RSA_PRIVATE),
                Some(ck::CKK_EC)
                | Some(ck::CKK_EC_EDWARDS)
                | Some(ck::CKK_EC_MONTGOMERY)
                | Some(vendor::CKK_SM2) => t.push(EC_PRIVATE),
                _ => {}
            }
        }
        _ => return None,
    }
    Some(t)
}

/// Look up the rule for `ty`; later tables override earlier ones (e.g.
/// `CKA_VALUE` of a secret key overrides nothing, but the class-specific row
/// wins over a common one).
pub fn rule(tables: &[&'static [Rule]], ty: u64) -> Option<Rule> {
    tables
        .iter()
        .rev()
        .find_map(|t| t.iter().find(|r| r.ty == ty).copied())
}

/// Check a value's encoding against its kind.
pub fn valid_encoding(kind: Kind, v: &[u8]) -> bool {
    match kind {
        Bool => v.len() == 1,
        Ulong => v.len() == 8,
        Bytes => true,
        Date => v.is_empty() || (v.len() == 8 && v.iter().all(u8::is_ascii_digit)),
        UlongArray => v.len().is_multiple_of(8),
        Template => v.is_empty() || canonical_template(v).is_some(),
    }
}

/// Every table, for the kind of an attribute inside a nested template
/// (which may describe an object of any class).
const ALL: &[&[Rule]] = &[
    COMMON,
    DATA,
    CERTIFICATE,
    X509,
    KEY,
    SECRET_KEY,
    PUBLIC_KEY,
    PRIVATE_KEY,
    RSA_PUBLIC,
    RSA_PRIVATE,
    EC_PUBLIC,
    EC_PRIVATE,
];

/// The stored form of a nested template, or `None` if `v` is not a valid
/// one: each attribute known to p11kms and encoded as its kind (a NULL
/// value is an empty one), booleans as 0/1, sorted by type with the last
/// of a repeated type kept (as for an outer template).
pub fn canonical_template(v: &[u8]) -> Option<Vec<u8>> {
    if v.is_empty() {
        return Some(Nested::default().encode());
    }
    let Nested(mut attrs) = Nested::decode(v)?;
    for a in &mut attrs {
        let kind = ALL
            .iter()
            .find_map(|t| t.iter().find(|r| r.ty == a.ty))?
            .kind;
        let value = a.value.take().unwrap_or_default();
        if kind == Template || !valid_encoding(kind, &value) {
            return None;
        }
        a.value = Some(match kind {
            Bool => vec![u8::from(value[0] != 0)],
            _ => value,
        });
    }
    attrs.reverse();
    attrs.sort_by_key(|a| a.ty); // stable: the last given comes first
    attrs.dedup_by_key(|a| a.ty);
    Some(Nested(attrs).encode())
}
