//! Which endpoint a request is for: a pure function of its method and path, so that odd
//! paths are answered with 404/405 by construction, never by slicing strings.

use super::{percent_decode, Request};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Register,
    Login,
    Logout,
    Rooms,
    /// `GET /rooms/{room}/messages`, the room name percent-decoded.
    History {
        room: String,
    },
    /// `GET /rooms/{room}`: whether it exists, and what it is.
    RoomInfo {
        room: String,
    },
    /// `POST /rooms/{room}/leave`.
    Leave {
        room: String,
    },
    /// `GET /invitations`: the user's pending invitations.
    Invitations,
    /// `GET /admin/audit`.
    AdminAudit,
    /// `POST /admin/users/{user}/suspend` (`on`) or `/unsuspend`.
    AdminSuspend {
        user: String,
        on: bool,
    },
    /// `POST /admin/rooms/{room}/remove`.
    AdminRemove {
        room: String,
    },
    /// `GET /account/sessions`.
    Sessions,
    /// `DELETE /account/sessions/{id}`.
    EndSession {
        id: String,
    },
    /// `POST /account/password`.
    ChangePassword,
    /// `GET /account/export`: everything of the account, as one JSON document.
    Export,
    /// `DELETE /account`: the account goes.
    DeleteAccount,
    /// `POST /account/reset`: a new password with a reset code.
    ResetPassword,
    /// `GET /registration`: who may register.
    Registration,
    /// `POST /admin/invites`.
    AdminInvite,
    /// `POST /admin/users/{user}/disconnect`: close their sockets now.
    AdminDisconnect {
        user: String,
    },
    Search,
    /// `POST /files`: an upload (its body is streamed).
    Upload,
    /// `GET /files/ID`.
    File {
        id: String,
    },
    Healthz,
    Metrics,
    AdminStats,
    /// `/ws`, any method (the upgrade check answers a non-GET).
    Upgrade,
    /// Any other GET: a file of the web UI, or 404.
    Asset,
    MethodNotAllowed {
        allow: &'static str,
    },
    NotFound,
}

/// Fixed paths and the one method each answers.
const FIXED: &[(&str, &str, Route)] = &[
    ("/register", "POST", Route::Register),
    ("/login", "POST", Route::Login),
    ("/logout", "POST", Route::Logout),
    ("/rooms", "GET", Route::Rooms),
    ("/invitations", "GET", Route::Invitations),
    ("/search", "GET", Route::Search),
    ("/healthz", "GET", Route::Healthz),
    ("/metrics", "GET", Route::Metrics),
    ("/admin/stats", "GET", Route::AdminStats),
    ("/admin/audit", "GET", Route::AdminAudit),
    ("/account/sessions", "GET", Route::Sessions),
    ("/account/password", "POST", Route::ChangePassword),
    ("/account/export", "GET", Route::Export),
    ("/account/reset", "POST", Route::ResetPassword),
    ("/registration", "GET", Route::Registration),
    ("/admin/invites", "POST", Route::AdminInvite),
    ("/files", "POST", Route::Upload),
];

pub fn route(req: &Request) -> Route {
    route_parts(&req.method, &req.path)
}

fn route_parts(method: &str, path: &str) -> Route {
    if path == "/ws" {
        return Route::Upgrade;
    }
    if let Some((_, allow, r)) = FIXED.iter().find(|(p, _, _)| *p == path) {
        return if method == *allow {
            r.clone()
        } else {
            Route::MethodNotAllowed { allow }
        };
    }
    if let Some(room) = room_path(path, "/messages") {
        return match (method, room) {
            ("GET", Some(room)) => Route::History { room },
            ("GET", None) => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "GET" },
        };
    }
    if let Some(room) = room_path(path, "/leave") {
        return match (method, room) {
            ("POST", Some(room)) => Route::Leave { room },
            ("POST", None) => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "POST" },
        };
    }
    if path == "/account" {
        return match method {
            "DELETE" => Route::DeleteAccount,
            _ => Route::MethodNotAllowed { allow: "DELETE" },
        };
    }
    if let Some(id) = path.strip_prefix("/account/sessions/") {
        let hex = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        return match method {
            "DELETE" if hex => Route::EndSession {
                id: id.to_ascii_lowercase(),
            },
            "DELETE" => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "DELETE" },
        };
    }
    if let Some(raw) = path.strip_prefix("/rooms/") {
        if !raw.is_empty() && !raw.contains('/') {
            return match (method, percent_decode(raw)) {
                ("GET", Some(room)) => Route::RoomInfo { room },
                ("GET", None) => Route::NotFound,
                _ => Route::MethodNotAllowed { allow: "GET" },
            };
        }
    }
    if let Some(id) = path.strip_prefix("/files/") {
        // Ids are the server's own: lower-case hex, nothing else is a file.
        let hex = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        return match method {
            "GET" if hex => Route::File { id: id.to_string() },
            "GET" => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "GET" },
        };
    }
    if let Some(rest) = path.strip_prefix("/admin/users/") {
        let (user, action) = match rest.rsplit_once('/') {
            Some((u, a @ ("suspend" | "unsuspend" | "disconnect"))) => (u, a),
            _ => return Route::NotFound,
        };
        return match (method, percent_decode(user)) {
            ("POST", Some(user)) if !user.is_empty() && !user.contains('/') => match action {
                "disconnect" => Route::AdminDisconnect { user },
                a => Route::AdminSuspend {
                    user,
                    on: a == "suspend",
                },
            },
            ("POST", _) => Route::NotFound,
            _ => Route::MethodNotAllowed { allow: "POST" },
        };
    }
    if let Some(rest) = path.strip_prefix("/admin") {
        if let Some(room) = room_path(rest, "/remove") {
            return match (method, room) {
                ("POST", Some(room)) => Route::AdminRemove { room },
                ("POST", None) => Route::NotFound,
                _ => Route::MethodNotAllowed { allow: "POST" },
            };
        }
    }
    match method {
        "GET" => Route::Asset,
        _ if path.starts_with("/rooms/") => Route::MethodNotAllowed { allow: "GET" },
        _ => Route::NotFound,
    }
}

/// For `/rooms/{room}{suffix}`: `Some(Some(name))`, or `Some(None)` when the name is
/// not one segment of valid percent-encoding; `None` for any other path.
fn room_path(path: &str, suffix: &str) -> Option<Option<String>> {
    let raw = path.strip_prefix("/rooms/")?.strip_suffix(suffix)?;
    if raw.contains('/') {
        return Some(None);
    }
    Some(percent_decode(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files() {
        assert_eq!(route_parts("POST", "/files"), Route::Upload);
        assert_eq!(
            route_parts("GET", "/files"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            route_parts("GET", "/files/0af9"),
            Route::File { id: "0af9".into() }
        );
        for odd in [
            "/files/",
            "/files/0AF9",
            "/files/../x",
            "/files/a/b",
            "/files/g1",
        ] {
            assert_eq!(route_parts("GET", odd), Route::NotFound, "{odd}");
        }
        assert_eq!(
            route_parts("DELETE", "/files/0af9"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(
            route_parts("GET", &format!("/files/{}", "a".repeat(65))),
            Route::NotFound
        );
    }

    #[test]
    fn fixed_paths_and_methods() {
        assert_eq!(route_parts("POST", "/register"), Route::Register);
        assert_eq!(route_parts("POST", "/login"), Route::Login);
        assert_eq!(route_parts("POST", "/logout"), Route::Logout);
        assert_eq!(route_parts("GET", "/rooms"), Route::Rooms);
        assert_eq!(route_parts("GET", "/search"), Route::Search);
        assert_eq!(route_parts("GET", "/healthz"), Route::Healthz);
        assert_eq!(route_parts("GET", "/metrics"), Route::Metrics);
        assert_eq!(route_parts("GET", "/admin/stats"), Route::AdminStats);
        assert_eq!(route_parts("GET", "/ws"), Route::Upgrade);
        assert_eq!(route_parts("POST", "/ws"), Route::Upgrade);
        assert_eq!(
            route_parts("GET", "/login"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            route_parts("DELETE", "/rooms"),
            Route::MethodNotAllowed { allow: "GET" }
        );
    }

    #[test]
    fn history_paths() {
        assert_eq!(
            route_parts("GET", "/rooms/general/messages"),
            Route::History {
                room: "general".into()
            }
        );
        assert_eq!(
            route_parts("GET", "/rooms/dm%3Aa%3Ab/messages"),
            Route::History {
                room: "dm:a:b".into()
            }
        );
        assert_eq!(
            route_parts("POST", "/rooms/general/messages"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(
            route_parts("POST", "/rooms/ops/leave"),
            Route::Leave { room: "ops".into() }
        );
        assert_eq!(
            route_parts("GET", "/rooms/ops/leave"),
            Route::MethodNotAllowed { allow: "POST" }
        );
        assert_eq!(
            route_parts("POST", "/rooms/leave"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        // Not one room name: no such room to leave, whatever the method allows.
        assert_eq!(route_parts("POST", "/rooms/a/b/leave"), Route::NotFound);
        assert_eq!(route_parts("POST", "/rooms/%zz/leave"), Route::NotFound);
        // A room name that is not percent-encoded UTF-8 is no room.
        assert_eq!(route_parts("GET", "/rooms/%zz"), Route::NotFound);
        assert_eq!(
            route_parts("POST", "/rooms/%zz"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        // Under /rooms/ only GET is ever answered (a page of the web UI at worst).
        assert_eq!(
            route_parts("DELETE", "/rooms/a/b"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(route_parts("DELETE", "/other/a"), Route::NotFound);
        assert_eq!(route_parts("GET", "/invitations"), Route::Invitations);
        assert_eq!(route_parts("GET", "/account/sessions"), Route::Sessions);
        assert_eq!(route_parts("DELETE", "/account"), Route::DeleteAccount);
        assert_eq!(
            route_parts("GET", "/rooms/a%2Db"),
            Route::RoomInfo { room: "a-b".into() }
        );
        assert_eq!(route_parts("GET", "/rooms/"), Route::Asset);
        assert_eq!(
            route_parts("POST", "/account"),
            Route::MethodNotAllowed { allow: "DELETE" }
        );
        assert_eq!(
            route_parts("POST", "/admin/users/b%20b/disconnect"),
            Route::AdminDisconnect { user: "b b".into() }
        );
        assert_eq!(
            route_parts("POST", "/account/password"),
            Route::ChangePassword
        );
        assert_eq!(
            route_parts("DELETE", "/account/sessions/0A1b"),
            Route::EndSession { id: "0a1b".into() }
        );
        assert_eq!(
            route_parts("DELETE", "/account/sessions/x/y"),
            Route::NotFound
        );
        assert_eq!(route_parts("DELETE", "/account/sessions/"), Route::NotFound);
        assert_eq!(
            route_parts("GET", "/account/sessions/ab"),
            Route::MethodNotAllowed { allow: "DELETE" }
        );
        assert_eq!(route_parts("GET", "/admin/audit"), Route::AdminAudit);
        assert_eq!(
            route_parts("POST", "/admin/users/bob/suspend"),
            Route::AdminSuspend {
                user: "bob".into(),
                on: true
            }
        );
        assert_eq!(
            route_parts("POST", "/admin/users/bob/unsuspend"),
            Route::AdminSuspend {
                user: "bob".into(),
                on: false
            }
        );
        assert_eq!(route_parts("POST", "/admin/users/bob/x"), Route::NotFound);
        assert_eq!(
            route_parts("POST", "/admin/users//suspend"),
            Route::NotFound
        );
        assert_eq!(
            route_parts("POST", "/admin/rooms/ops/remove"),
            Route::AdminRemove { room: "ops".into() }
        );
        assert_eq!(
            route_parts("POST", "/admin/rooms/%zz/remove"),
            Route::NotFound
        );
        assert_eq!(
            route_parts("GET", "/admin/rooms/ops/remove"),
            Route::MethodNotAllowed { allow: "POST" }
        );
    }

    #[test]
    fn odd_paths_never_panic() {
        // The crash of v0.1.0: the prefix and the suffix overlap. Now it asks about a room
        // named "messages" (a valid name).
        assert_eq!(
            route_parts("GET", "/rooms/messages"),
            Route::RoomInfo {
                room: "messages".into()
            }
        );
        assert_eq!(
            route_parts("GET", "/rooms//messages"),
            Route::History { room: "".into() }
        );
        assert_eq!(route_parts("GET", "/rooms/a/messages/x"), Route::Asset);
        assert_eq!(route_parts("GET", "/rooms/a/b/messages"), Route::NotFound);
        assert_eq!(route_parts("GET", "/rooms/%zz/messages"), Route::NotFound);
        assert_eq!(route_parts("GET", "/rooms/"), Route::Asset);
        assert_eq!(
            route_parts("PUT", "/rooms/x"),
            Route::MethodNotAllowed { allow: "GET" }
        );
        assert_eq!(route_parts("PUT", "/nowhere"), Route::NotFound);
        assert_eq!(route_parts("GET", ""), Route::Asset);
    }
}
