-- Account moderation (spec v1.18 "Server administration"): a locked account is served no
-- request; a suspended one may read and leave but not act.
ALTER TABLE users ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
