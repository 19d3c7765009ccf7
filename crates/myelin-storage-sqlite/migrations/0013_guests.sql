-- Guest accounts (register?kind=guest): limited to the spec's guest endpoints until upgraded.
ALTER TABLE users ADD COLUMN is_guest INTEGER NOT NULL DEFAULT 0;
