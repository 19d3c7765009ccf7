-- Account moderation (spec v1.18 "Server administration"): a locked account is served no
-- request; a suspended one may read and leave but not act. (SQLite's 0015.)
ALTER TABLE users ADD COLUMN locked BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN suspended BOOLEAN NOT NULL DEFAULT FALSE;
