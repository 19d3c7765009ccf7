//! Shared set-up steps: registering users and filling rooms with members. Not measured.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::client::{Client, User};
use crate::error::Result;
use crate::pool::run_indexed;

/// The password of every benchmark user.
pub const PASSWORD: &str = "bench-password-1";

/// What every workload gets: the client, a run-unique user name prefix and the set-up
/// concurrency.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub client: Client,
    pub prefix: String,
    pub setup_concurrency: usize,
}

impl Ctx {
    /// A context with a prefix unique to this run (so repeated runs against one server do not
    /// collide on user names).
    pub fn new(client: Client, setup_concurrency: usize) -> Ctx {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Ctx {
            client,
            prefix: format!("b{}", base36((millis % 10u128.pow(12)) as u64)),
            setup_concurrency,
        }
    }
}

/// `n` in base 36 with lower-case digits.
pub fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8_lossy(&out).into_owned()
}

/// Registers `n` users named `<prefix><tag><i>`.
pub async fn register_users(ctx: &Ctx, tag: &str, n: usize) -> Result<Vec<User>> {
    let client = ctx.client.clone();
    let base = format!("{}{}", ctx.prefix, tag);
    let out = run_indexed(n, ctx.setup_concurrency, move |i| {
        let client = client.clone();
        let name = format!("{base}{i}");
        async move { client.register(&name, PASSWORD).await }
    })
    .await?;
    out.into_iter().collect()
}

/// Creates one public room per entry of `members` (the first user of each entry creates it,
/// the others join) and returns the room IDs in the same order.
pub async fn rooms_with_members(
    ctx: &Ctx,
    users: &[User],
    members: &[Vec<usize>],
) -> Result<Vec<String>> {
    let users: Arc<Vec<User>> = Arc::new(users.to_vec());
    let creators: Vec<usize> = members
        .iter()
        .map(|m| m.first().copied().unwrap_or(0))
        .collect();
    let client = ctx.client.clone();
    let (u, c) = (users.clone(), Arc::new(creators));
    let rooms: Vec<String> = run_indexed(members.len(), ctx.setup_concurrency, move |r| {
        let (client, u, c) = (client.clone(), u.clone(), c.clone());
        async move { client.create_public_room(&u[c[r]]).await }
    })
    .await?
    .into_iter()
    .collect::<Result<_>>()?;
    let joins: Vec<(usize, usize)> = members
        .iter()
        .enumerate()
        .flat_map(|(r, m)| m.iter().skip(1).map(move |&user| (r, user)))
        .collect();
    join_pairs(ctx, &users, &rooms, joins).await?;
    Ok(rooms)
}

/// Makes each `(room index, user index)` pair join, rooms interleaved so that concurrent
/// joins mostly hit different rooms.
pub async fn join_pairs(
    ctx: &Ctx,
    users: &Arc<Vec<User>>,
    rooms: &[String],
    mut joins: Vec<(usize, usize)>,
) -> Result<()> {
    joins.sort_by_key(|&(r, u)| (u, r));
    let (client, users, rooms, joins) = (
        ctx.client.clone(),
        users.clone(),
        Arc::new(rooms.to_vec()),
        Arc::new(joins),
    );
    let n = joins.len();
    run_indexed(n, ctx.setup_concurrency, move |i| {
        let (client, users, rooms, joins) =
            (client.clone(), users.clone(), rooms.clone(), joins.clone());
        async move {
            let (r, u) = joins[i];
            client.join(&users[u], &rooms[r]).await
        }
    })
    .await?
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_digits() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
    }
}
