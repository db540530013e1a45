"""A complete txpubsub client program: watch a channel, publish to it, survive restarts.

    twistd -n txpubsub --port tcp:23400:interface=127.0.0.1 --store sqlite:history.db
    python examples/ticker.py            # in another terminal; restart the server meanwhile
"""
from __future__ import annotations

import sys

from twisted.internet import task
from twisted.internet.defer import Deferred

from txpubsub.client import Client, CommandError, ServerClosed
from txpubsub.wire.parser import Delivery


async def main(reactor) -> None:
    client = Client(reactor, "tcp:127.0.0.1:23400", name="ticker",
                    on_state=lambda state: print(f"-- {state}", file=sys.stderr))
    client.start()

    def show(msg: Delivery) -> None:
        print(f"{msg.channel} #{msg.msg_id} from {msg.sender}: {msg.text}")

    # The last 5 kept messages first, then live ones; after a reconnect the
    # client resumes with since=<last id seen>, so nothing kept is missed.
    await client.subscribe("ticks", show, last=5)
    for n in range(1, 31):
        try:
            msg_id = await client.publish("ticks", f"tick {n}")
            print(f"published tick {n} as #{msg_id}")
        except ServerClosed:
            print(f"tick {n}: the connection dropped before the reply", file=sys.stderr)
        except CommandError as e:
            print(f"tick {n} refused: {e.code} {e.text}", file=sys.stderr)
        await task.deferLater(reactor, 1.0)
    print([m.text for m in await client.history("ticks", 3)])
    await client.stop()


if __name__ == "__main__":
    task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
