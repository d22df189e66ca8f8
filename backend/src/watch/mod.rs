//! Smartwatches: the feed they follow (`/watch/ws`, `/watch/events`) and the
//! node's map of open feeds. Pairing and device management are REST, in
//! `api::watch`.

pub mod feed;
pub mod hub;

pub use hub::{DeviceControl, WatchHub};
