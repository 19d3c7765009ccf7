//! The command-line sizes of every workload (flags named `--<workload>-<size>`, so that one set
//! works for a single workload, `all` and `compare`), turned into [`AllParams`].

use clap::Args;

use crate::workloads::{
    deliver, incremental_sync, initial_sync, join, push, send, sliding_sync, upload, AllParams,
};

/// Workload sizes; the defaults are those of issue 5.
#[derive(Debug, Clone, Args)]
pub struct Sizes {
    /// send: users registered.
    #[arg(long, default_value_t = 50)]
    pub send_users: usize,
    /// send: rooms.
    #[arg(long, default_value_t = 20)]
    pub send_rooms: usize,
    /// send: members per room.
    #[arg(long, default_value_t = 10)]
    pub send_members: usize,
    /// send: messages sent.
    #[arg(long, default_value_t = 5000)]
    pub send_messages: usize,
    /// send: requests in flight.
    #[arg(long, default_value_t = 32)]
    pub send_concurrency: usize,
    /// deliver: samples (messages sent one at a time).
    #[arg(long, default_value_t = 500)]
    pub deliver_samples: usize,
    /// push: samples (messages sent one at a time, each notifying a member with a pusher).
    #[arg(long, default_value_t = 200)]
    pub push_samples: usize,
    /// initial-sync: rooms the user is in.
    #[arg(long, default_value_t = 200)]
    pub initial_rooms: usize,
    /// initial-sync: members per room.
    #[arg(long, default_value_t = 50)]
    pub initial_members: usize,
    /// initial-sync: messages per room.
    #[arg(long, default_value_t = 20)]
    pub initial_events: usize,
    /// initial-sync: timeline limit of the filter.
    #[arg(long, default_value_t = 10)]
    pub initial_timeline_limit: usize,
    /// initial-sync: measurements of each kind.
    #[arg(long, default_value_t = 5)]
    pub initial_samples: usize,
    /// incremental-sync: users holding long-polls.
    #[arg(long, default_value_t = 500)]
    pub incremental_users: usize,
    /// incremental-sync: rooms they are spread over.
    #[arg(long, default_value_t = 50)]
    pub incremental_rooms: usize,
    /// incremental-sync: messages sent.
    #[arg(long, default_value_t = 200)]
    pub incremental_messages: usize,
    /// incremental-sync: milliseconds between sends.
    #[arg(long, default_value_t = 20)]
    pub incremental_interval_ms: u64,
    /// join: member counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    pub join_sizes: Vec<usize>,
    /// join: leave + rejoin cycles measured per size.
    #[arg(long, default_value_t = 20)]
    pub join_samples: usize,
    /// join: concurrency of the fill joins.
    #[arg(long, default_value_t = 8)]
    pub join_concurrency: usize,
    /// sliding-sync: first responses measured, each on a new connection (rooms, members and
    /// events are initial-sync's).
    #[arg(long, default_value_t = 5)]
    pub sliding_samples: usize,
    /// sliding-sync: wake-ups of a pending long-poll measured.
    #[arg(long, default_value_t = 50)]
    pub sliding_wakeups: usize,
    /// upload: file sizes in KiB, comma-separated, each measured on its own.
    #[arg(long, value_delimiter = ',', default_value = "1024,10240")]
    pub upload_sizes_kib: Vec<usize>,
    /// upload: files uploaded, then downloaded, per size.
    #[arg(long, default_value_t = 64)]
    pub upload_files: usize,
    /// upload: requests in flight.
    #[arg(long, default_value_t = 16)]
    pub upload_concurrency: usize,
}

impl Sizes {
    /// The workload parameters.
    pub fn params(&self) -> AllParams {
        AllParams {
            send: send::Params {
                users: self.send_users,
                rooms: self.send_rooms,
                members: self.send_members,
                messages: self.send_messages,
                concurrency: self.send_concurrency,
            },
            deliver: deliver::Params {
                samples: self.deliver_samples,
                ..deliver::Params::default()
            },
            push: push::Params {
                samples: self.push_samples,
                ..push::Params::default()
            },
            initial_sync: initial_sync::Params {
                rooms: self.initial_rooms,
                members: self.initial_members,
                events: self.initial_events,
                timeline_limit: self.initial_timeline_limit,
                samples: self.initial_samples,
            },
            incremental_sync: incremental_sync::Params {
                users: self.incremental_users,
                rooms: self.incremental_rooms,
                messages: self.incremental_messages,
                interval_ms: self.incremental_interval_ms,
                ..incremental_sync::Params::default()
            },
            join: join::Params {
                sizes: self.join_sizes.clone(),
                samples: self.join_samples,
                concurrency: self.join_concurrency,
            },
            sliding_sync: sliding_sync::Params {
                rooms: self.initial_rooms,
                members: self.initial_members,
                events: self.initial_events,
                samples: self.sliding_samples,
                wakeups: self.sliding_wakeups,
                ..sliding_sync::Params::default()
            },
            upload: upload::Params {
                sizes_kib: self.upload_sizes_kib.clone(),
                files: self.upload_files,
                concurrency: self.upload_concurrency,
                ..upload::Params::default()
            },
        }
    }
}
