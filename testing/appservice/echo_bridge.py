"""A small echo bridge built on mautrix (the library of the mautrix bridges), for Myelin's
real-bridge test (testing/tests/appservice_mautrix.rs).

It starts against the homeserver (whoami, ping, registers its bot), creates a portal room when the
homeserver asks about an alias of its namespace, relays each message a Matrix user sends in a
portal to the "remote network" (a loopback HTTP stub the test runs), and posts the network's
answer back as a puppet (@echo_<name>) with the network's timestamp (`?ts=`). What it sees is
written as JSON lines to the journal file, which the test reads: `ready`, every transaction ID
and its event IDs, typing, receipts and presence (ephemeral events), relayed messages.

Usage: python echo_bridge.py HOMESERVER DOMAIN PORT AS_TOKEN HS_TOKEN REMOTE_URL JOURNAL
"""

import asyncio
import json
import logging
import sys

import aiohttp
from mautrix.appservice import AppService
from mautrix.types import EventType, MessageType, RoomCreatePreset, TextMessageEventContent

APPSERVICE_ID = "echo"


def main() -> None:
    homeserver, domain, port, as_token, hs_token, remote, journal_path = sys.argv[1:8]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(run(homeserver, domain, int(port), as_token, hs_token, remote, journal_path))


class Journal:
    def __init__(self, path: str) -> None:
        self.file = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, **entry) -> None:
        self.file.write(json.dumps(entry) + "\n")


class EchoBridge(AppService):
    """An AppService that journals every transaction it handles (after mautrix's own
    de-duplication by transaction ID)."""

    journal: Journal

    async def handle_transaction(self, txn_id, *, events, **kwargs):
        ids = [e.get("event_id") for e in events]
        self.journal.write(kind="txn", txn_id=txn_id, event_ids=ids)
        return await super().handle_transaction(txn_id, events=events, **kwargs)


async def run(homeserver, domain, port, as_token, hs_token, remote, journal_path) -> None:
    journal = Journal(journal_path)
    portals: set[str] = set()
    bridge: EchoBridge

    async def query_alias(alias: str):
        # The homeserver asks about #echo_<name>:domain: create the portal, as a bridge does.
        localpart = alias[1:].split(":", 1)[0]
        room_id = await bridge.intent.create_room(
            alias_localpart=localpart, preset=RoomCreatePreset.PUBLIC, name=f"Portal {localpart}"
        )
        portals.add(room_id)
        journal.write(kind="portal", alias=alias, room_id=room_id)
        return {"room_id": room_id}

    async def query_user(user_id: str):
        await bridge.intent.user(user_id).ensure_registered()
        journal.write(kind="puppet", user_id=user_id)
        return {"user_id": user_id}

    bridge = EchoBridge(
        server=homeserver,
        domain=domain,
        as_token=as_token,
        hs_token=hs_token,
        bot_localpart="echobot",
        id=APPSERVICE_ID,
        query_alias=query_alias,
        query_user=query_user,
        ephemeral_events=True,
        state_store=None,
    )
    bridge.journal = journal
    remote_session = aiohttp.ClientSession()

    @bridge.matrix_event_handler
    async def on_event(event) -> None:
        kind = event.type.t
        if kind == "m.typing":
            journal.write(kind="typing", room_id=event.room_id, user_ids=list(event.content.user_ids))
        elif kind == "m.receipt":
            journal.write(kind="receipt", room_id=event.room_id, event_ids=list(event.content.keys()))
        elif kind == "m.presence":
            journal.write(kind="presence", user_id=event.sender, presence=str(event.content.presence.value))
        elif kind == "m.room.message" and event.room_id in portals:
            if event.sender.startswith("@echo_") or event.sender == bridge.bot_mxid:
                return
            await relay(event)

    async def relay(event) -> None:
        # To the remote network, and its answer back as a puppet with the network's time.
        body = {"room_id": event.room_id, "sender": event.sender, "body": event.content.body}
        async with remote_session.post(f"{remote}/send", json=body) as resp:
            answer = await resp.json()
        puppet = bridge.intent.user(f"@echo_{answer['sender']}:{domain}")
        await puppet.ensure_registered()
        await puppet.ensure_joined(event.room_id)
        content = TextMessageEventContent(msgtype=MessageType.TEXT, body=answer["reply"])
        event_id = await puppet.send_message_event(
            event.room_id, EventType.ROOM_MESSAGE, content, timestamp=answer["ts"]
        )
        journal.write(kind="relayed", from_event=event.event_id, event_id=event_id)

    await bridge.start(host="127.0.0.1", port=port)
    await bridge.intent.ensure_registered()
    whoami = await bridge.intent.whoami()
    ping_ms = await bridge.ping_self("echo-startup")
    journal.write(kind="ready", whoami=whoami.user_id, ping_ms=ping_ms)
    try:
        await asyncio.Event().wait()
    finally:
        await remote_session.close()
        await bridge.stop()


if __name__ == "__main__":
    main()
