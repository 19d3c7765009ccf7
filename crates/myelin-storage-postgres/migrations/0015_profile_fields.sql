-- Extended profiles (spec v1.16): custom profile fields (`m.tz`, namespaced keys), one JSON
-- value per user and field; `displayname` and `avatar_url` stay columns of `users`. (SQLite's
-- 0016.)
CREATE TABLE profile_fields (
    user_id TEXT NOT NULL,
    field   TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (user_id, field)
);
