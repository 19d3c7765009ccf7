//! Storage traits, grouped by aggregate, and the records they exchange.
//!
//! Every method is one transaction: a method that writes several tables commits all of them or
//! none. The traits do no IO themselves; the backends (`myelin-storage-sqlite`,
//! `myelin-storage-postgres`) implement them, and share here what does not depend on the SQL
//! dialect: decoding rows ([`rows`]), the layout of state snapshots ([`snapshot`]), value
//! conversions ([`convert`]) and the tables a copy moves ([`dump`]). Stream positions come from
//! one global counter that every write bumps, and a write's position is visible to readers only
//! once everything before it has committed.

mod account;
mod appservice;
mod backup;
#[cfg(feature = "conformance")]
pub mod conformance;
pub mod convert;
pub mod dump;
mod error;
mod external_id;
mod federation;
mod keys;
mod media;
mod meta;
mod push;
pub mod push_fold;
mod relations;
mod remote_devices;
mod room;
pub mod rows;
mod search;
pub mod snapshot;
mod threepid;
mod user_data;

pub use account::*;
pub use appservice::*;
pub use backup::*;
pub use error::{StorageError, StorageResult};
pub use external_id::*;
pub use federation::*;
pub use keys::*;
pub use media::*;
pub use meta::*;
pub use push::*;
pub use relations::*;
pub use remote_devices::*;
pub use room::*;
pub use search::*;
pub use snapshot::MAX_DELTA_DEPTH;
pub use threepid::*;
pub use user_data::*;

/// Everything the service needs from a database.
pub trait Storage:
    AccountStore
    + AppserviceStore
    + RoomStore
    + RelationStore
    + SearchStore
    + ThreepidStore
    + ExternalIdStore
    + UserDataStore
    + FederationStore
    + KeyStore
    + RemoteDeviceStore
    + BackupStore
    + MediaStore
    + PushStore
    + Send
    + Sync
    + 'static
{
}

impl<
        T: AccountStore
            + AppserviceStore
            + RoomStore
            + RelationStore
            + SearchStore
            + ThreepidStore
            + ExternalIdStore
            + UserDataStore
            + FederationStore
            + KeyStore
            + RemoteDeviceStore
            + BackupStore
            + MediaStore
            + PushStore
            + Send
            + Sync
            + 'static,
    > Storage for T
{
}
