//! Who is calling: password hashing, signed access tokens, refresh-token
//! rotation, and the extractors that handlers take.

mod extract;
pub mod guest;
mod jwt;
mod password;
mod refresh;
mod secret;
mod throttle;

pub use extract::{principal_for_token, request_token, AuthUser, MaybePrincipal, Principal};
pub use jwt::{Claims, TokenKeys, TokenKind, CLOCK_LEEWAY_S};
pub use password::PasswordHasher;
pub use refresh::{RefreshTokens, RotateOutcome};
pub use secret::{new_secret, secret_hash};
pub use throttle::{Lockout, LoginGuard, LoginThrottle, Throttle, Throttles};
