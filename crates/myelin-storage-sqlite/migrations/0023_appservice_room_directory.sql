-- Myelin SQLite schema: the room directories of application services' third-party networks.
-- A bridge publishes a room under one of its networks (`PUT /directory/list/appservice/
-- {networkId}/{roomId}`); `/publicRooms` lists it only when asked for that network
-- (`third_party_instance_id`) or for every network (`include_all_networks`).
CREATE TABLE appservice_room_directory (
    appservice_id TEXT NOT NULL,
    network_id    TEXT NOT NULL,
    room_id       TEXT NOT NULL,
    published_ms  INTEGER NOT NULL,
    PRIMARY KEY (appservice_id, network_id, room_id)
) STRICT;
