// node-redis against txpubsub's RESP door; tests/test_resp_node.py runs it.
// Usage: node pubsub.mjs PORT CHANNEL RESP(2|3)
// Subscribes to CHANNEL and to the glob FIRST-TOKEN.*, prints {"subscribed":true},
// waits for a line on stdin (the test subscribes elsewhere meanwhile),
// publishes "from node" to CHANNEL, and prints what it saw as JSON.
import { createClient } from "redis";

const [port, channel, resp] = process.argv.slice(2);
const fail = (error) => {
  console.log(JSON.stringify({ error: String(error) }));
  process.exit(2);
};
const timer = setTimeout(() => fail("timeout"), 10000);

const pub = createClient({ socket: { host: "127.0.0.1", port: Number(port) }, RESP: Number(resp) });
pub.on("error", fail);
await pub.connect();
const sub = pub.duplicate();
sub.on("error", fail);
await sub.connect();

const got = [];
let both;
const arrived = new Promise((resolve) => { both = resolve; });
const take = (kind) => (message, from) => {
  got.push([kind, from, message]);
  if (got.length === 2) both();
};
const pattern = channel.split(".")[0] + ".*";
await sub.subscribe(channel, take("message"));
await sub.pSubscribe(pattern, take("pmessage"));
console.log(JSON.stringify({ subscribed: true }));
await new Promise((resolve) => process.stdin.once("data", resolve));

const receivers = await pub.publish(channel, "from node");
await arrived;
const numsub = await pub.pubSubNumSub(channel);
const ping = await pub.ping();
// Named: with a glob also held, node-redis 5.9's bare unsubscribe() never
// resolves (against Redis too).
await sub.unsubscribe(channel);
await sub.pUnsubscribe(pattern);
await Promise.all([sub.quit(), pub.quit()]);
clearTimeout(timer);
console.log(JSON.stringify({ receivers, got, numsub, ping }));
process.stdin.destroy();
