-- The identity servers a user bound an address on (`/account/3pid/bind`), so that an unbind or
-- a delete without `id_server` goes to the right one. (SQLite's 0024.)
CREATE TABLE user_threepid_id_servers (
    user_id   TEXT NOT NULL,
    medium    TEXT NOT NULL,
    address   TEXT NOT NULL,
    id_server TEXT NOT NULL,
    PRIMARY KEY (user_id, medium, address, id_server)
);
