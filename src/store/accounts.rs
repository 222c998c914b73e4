//! The writer's account changes: deleting an account (its traces anonymised in one
//! transaction) and setting a password (a reset code used up, other sessions revoked).

use super::sql::{p, Db, Res};
use super::StoreError;
use crate::id::UserId;
use crate::time::now_ms;

/// Anonymises an account: its reactions and attachments go, its messages become blanks,
/// its sessions, memberships, invitations and reset codes go, its rooms lose their owner.
pub(super) fn delete_account(tx: Db, user: UserId) -> Res<()> {
    // Their reactions go, and so do reactions to their messages (which become blanks),
    // and the files attached to those (swept once attached to nothing).
    tx.exec(
        "DELETE FROM attachments WHERE message_id IN (SELECT id FROM messages WHERE user_id = ?1)",
        p![user],
    )?;
    tx.exec(
        "DELETE FROM reactions WHERE user_id = ?1
            OR message_id IN (SELECT id FROM messages WHERE user_id = ?1)",
        p![user],
    )?;
    tx.exec(
        "UPDATE messages SET text = '', deleted = 1 WHERE user_id = ?1 AND deleted = 0",
        p![user],
    )?;
    for sql in [
        "DELETE FROM tokens WHERE user_id = ?1",
        "DELETE FROM members WHERE user_id = ?1",
        "DELETE FROM invitations WHERE user_id = ?1 OR by_id = ?1",
        "DELETE FROM reset_codes WHERE user_id = ?1",
        "UPDATE rooms SET owner_id = NULL WHERE owner_id = ?1",
    ] {
        tx.exec(sql, p![user])?;
    }
    tx.exec(
        "UPDATE users SET pw_hash = '', admin = 0, deleted_at = ?2 WHERE id = ?1",
        p![user, now_ms()],
    )?;
    Ok(())
}

/// Uses up the reset code if there is one (refused: `Forbidden`), stores the new hash and
/// revokes every token but `keep`.
pub(super) fn set_password(
    tx: Db,
    user: UserId,
    phc: &str,
    keep: Option<&crate::auth::TokenHash>,
    code: Option<&crate::auth::TokenHash>,
) -> Res<Result<(), StoreError>> {
    if let Some(c) = code {
        let n = tx.exec(
            "UPDATE reset_codes SET used = 1 WHERE hash = ?1 AND user_id = ?2 AND used = 0 AND expires_at > ?3",
            p![&c[..], user, now_ms()],
        )?;
        if n != 1 {
            return Ok(Err(StoreError::Forbidden));
        }
    }
    tx.exec("UPDATE users SET pw_hash = ?2 WHERE id = ?1", p![user, phc])?;
    tx.exec(
        "DELETE FROM tokens WHERE user_id = ?1 AND hash IS DISTINCT FROM ?2",
        p![user, keep.map(|k| &k[..])],
    )?;
    Ok(Ok(()))
}
