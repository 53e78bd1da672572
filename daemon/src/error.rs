//! The daemon's one error type: a `CK_RV` for the caller plus a message for
//! the log.

use pkcs11_sys as ck;

/// An error carrying the PKCS#11 return value the caller sees and a message
/// that only goes to the daemon's log.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{msg} (rv=0x{rv:x})")]
pub struct Error {
    pub rv: u64,
    pub msg: String,
}

/// Result alias used throughout the daemon.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error with a return code and a log message.
    pub fn new(rv: u64, msg: impl Into<String>) -> Self {
        Error {
            rv,
            msg: msg.into(),
        }
    }
    /// Just a return code; the message is the code's name.
    pub fn rv(rv: u64) -> Self {
        Error {
            rv,
            msg: rv_name(rv).to_string(),
        }
    }
    pub fn general(msg: impl Into<String>) -> Self {
        Error::new(ck::CKR_GENERAL_ERROR, msg)
    }
    pub fn mechanism_invalid() -> Self {
        Error::rv(ck::CKR_MECHANISM_INVALID)
    }
    pub fn param_invalid(msg: impl Into<String>) -> Self {
        Error::new(ck::CKR_MECHANISM_PARAM_INVALID, msg)
    }
    pub fn key_type_inconsistent() -> Self {
        Error::rv(ck::CKR_KEY_TYPE_INCONSISTENT)
    }
    pub fn key_size_range() -> Self {
        Error::rv(ck::CKR_KEY_SIZE_RANGE)
    }
    pub fn attribute_value_invalid(msg: impl Into<String>) -> Self {
        Error::new(ck::CKR_ATTRIBUTE_VALUE_INVALID, msg)
    }
    /// A key check's error restated for the wrapping key of `C_WrapKey`
    /// (`CKR_WRAPPING_KEY_TYPE_INCONSISTENT` / `_SIZE_RANGE`, v3.0 §5.18).
    pub fn of_wrapping_key(self) -> Self {
        match self.rv {
            ck::CKR_KEY_TYPE_INCONSISTENT => Error::rv(ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
            ck::CKR_KEY_SIZE_RANGE => Error::rv(ck::CKR_WRAPPING_KEY_SIZE_RANGE),
            _ => self,
        }
    }
    /// The same for the unwrapping key of `C_UnwrapKey`.
    pub fn of_unwrapping_key(self) -> Self {
        match self.rv {
            ck::CKR_KEY_TYPE_INCONSISTENT => Error::rv(ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT),
            ck::CKR_KEY_SIZE_RANGE => Error::rv(ck::CKR_UNWRAPPING_KEY_SIZE_RANGE),
            _ => self,
        }
    }
}

/// Short names for the codes seen most in logs.
pub fn rv_name(rv: u64) -> &'static str {
    match rv {
        ck::CKR_OK => "CKR_OK",
        ck::CKR_GENERAL_ERROR => "CKR_GENERAL_ERROR",
        ck::CKR_ARGUMENTS_BAD => "CKR_ARGUMENTS_BAD",
        ck::CKR_ATTRIBUTE_READ_ONLY => "CKR_ATTRIBUTE_READ_ONLY",
        ck::CKR_ATTRIBUTE_SENSITIVE => "CKR_ATTRIBUTE_SENSITIVE",
        ck::CKR_ATTRIBUTE_TYPE_INVALID => "CKR_ATTRIBUTE_TYPE_INVALID",
        ck::CKR_ATTRIBUTE_VALUE_INVALID => "CKR_ATTRIBUTE_VALUE_INVALID",
        ck::CKR_DATA_INVALID => "CKR_DATA_INVALID",
        ck::CKR_DATA_LEN_RANGE => "CKR_DATA_LEN_RANGE",
        ck::CKR_ENCRYPTED_DATA_INVALID => "CKR_ENCRYPTED_DATA_INVALID",
        ck::CKR_ENCRYPTED_DATA_LEN_RANGE => "CKR_ENCRYPTED_DATA_LEN_RANGE",
        ck::CKR_KEY_HANDLE_INVALID => "CKR_KEY_HANDLE_INVALID",
        ck::CKR_KEY_SIZE_RANGE => "CKR_KEY_SIZE_RANGE",
        ck::CKR_KEY_TYPE_INCONSISTENT => "CKR_KEY_TYPE_INCONSISTENT",
        ck::CKR_KEY_FUNCTION_NOT_PERMITTED => "CKR_KEY_FUNCTION_NOT_PERMITTED",
        ck::CKR_KEY_NOT_WRAPPABLE => "CKR_KEY_NOT_WRAPPABLE",
        ck::CKR_KEY_UNEXTRACTABLE => "CKR_KEY_UNEXTRACTABLE",
        ck::CKR_MECHANISM_INVALID => "CKR_MECHANISM_INVALID",
        ck::CKR_MECHANISM_PARAM_INVALID => "CKR_MECHANISM_PARAM_INVALID",
        ck::CKR_OBJECT_HANDLE_INVALID => "CKR_OBJECT_HANDLE_INVALID",
        ck::CKR_OPERATION_ACTIVE => "CKR_OPERATION_ACTIVE",
        ck::CKR_OPERATION_NOT_INITIALIZED => "CKR_OPERATION_NOT_INITIALIZED",
        ck::CKR_PIN_INCORRECT => "CKR_PIN_INCORRECT",
        ck::CKR_PIN_LOCKED => "CKR_PIN_LOCKED",
        ck::CKR_SESSION_HANDLE_INVALID => "CKR_SESSION_HANDLE_INVALID",
        ck::CKR_SIGNATURE_INVALID => "CKR_SIGNATURE_INVALID",
        ck::CKR_SIGNATURE_LEN_RANGE => "CKR_SIGNATURE_LEN_RANGE",
        ck::CKR_TEMPLATE_INCOMPLETE => "CKR_TEMPLATE_INCOMPLETE",
        ck::CKR_TEMPLATE_INCONSISTENT => "CKR_TEMPLATE_INCONSISTENT",
        ck::CKR_USER_NOT_LOGGED_IN => "CKR_USER_NOT_LOGGED_IN",
        ck::CKR_WRAPPED_KEY_INVALID => "CKR_WRAPPED_KEY_INVALID",
        ck::CKR_WRAPPED_KEY_LEN_RANGE => "CKR_WRAPPED_KEY_LEN_RANGE",
        ck::CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT => "CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT",
        ck::CKR_WRAPPING_KEY_TYPE_INCONSISTENT => "CKR_WRAPPING_KEY_TYPE_INCONSISTENT",
        _ => "CKR_(other)",
    }
}
