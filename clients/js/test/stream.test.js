// RoomStream in Node (npm's `eventsource` as the EventSource) against the real gateway.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { EventSource } from "eventsource";

import { Publisher, RoomStream, compareIds } from "../index.js";
import { WAIT_MS, env, history, logsReach, newRoom, nextEvent, record, startProxy } from "./support.js";

const URL_ = env("ROOMLOGS_URL");
const LIMITED_URL = env("ROOMLOGS_LIMITED_URL");
const TOKEN = env("ROOMLOGS_TOKEN");
const OTHER_TOKEN = env("ROOMLOGS_OTHER_TOKEN");

const publisher = new Publisher({ url: URL_, token: TOKEN });
const streams = [];
function open(options) {
  const stream = new RoomStream({ EventSource, token: TOKEN, server: URL_, ...options });
  streams.push(stream);
  return stream;
}
after(() => {
  for (const stream of streams) stream.close();
});

async function publishAll(room, messages) {
  const ids = [];
  for (const message of messages) ids.push(await publisher.emit(room, message, { agentType: "code" }));
  return ids;
}

test("follows a room: its history, then live logs, in order with their ids", async () => {
  const room = newRoom();
  const earlier = await publishAll(room, ["m0", "m1", "m2"]);
  const stream = open({ room, history: 100 });
  const seen = record(stream);
  const connected = nextEvent(stream, "connected");
  stream.start();
  assert.equal((await connected).roomId, room);
  assert.equal(stream.state, "live");
  await logsReach(stream, seen, 3);
  const later = await publishAll(room, ["m3", "m4", "m5"]);
  await logsReach(stream, seen, 6);

  assert.deepEqual(
    seen.logs.map((l) => [l.id, l.log.message, l.log.agentType]),
    [...earlier, ...later].map((id, i) => [id, `m${i}`, "code"]),
  );
  const stored = await history(URL_, room, TOKEN);
  assert.deepEqual(seen.logs.map((l) => l.id), stored.map((l) => l.id));
  assert.equal(stream.lastEventId, later.at(-1));
  assert.deepEqual(seen.duplicates, []);
});

test("resumes after the gateway's side of the stream goes away, losing and repeating nothing", async () => {
  const room = newRoom();
  const proxy = await startProxy(URL_);
  try {
    const stream = open({ room, server: proxy.url, history: 0 });
    const seen = record(stream);
    const live = nextEvent(stream, "connected");
    stream.start();
    await live;
    const before = await publishAll(room, ["a0", "a1", "a2"]);
    await logsReach(stream, seen, 3);

    const reconnecting = nextEvent(stream, "state", (d) => d.state === "reconnecting");
    await proxy.cut();
    await reconnecting;
    // Published while the stream is down: they must come from history on the resume.
    const missed = await publishAll(room, ["a3", "a4", "a5"]);
    const relive = nextEvent(stream, "state", (d) => d.state === "live");
    proxy.release();
    await relive;
    await logsReach(stream, seen, 6);
    const afterwards = await publishAll(room, ["a6"]);
    await logsReach(stream, seen, 7);

    const ids = [...before, ...missed, ...afterwards];
    assert.deepEqual(
      seen.logs.map((l) => [l.id, l.log.message]),
      ids.map((id, i) => [id, `a${i}`]),
    );
    for (let i = 1; i < ids.length; i++) assert.ok(compareIds(ids[i - 1], ids[i]) < 0);
    assert.deepEqual(seen.duplicates, []);
    // The reconnect asked for what came after the last log it had.
    const resumed = proxy.heads.filter((h) => /^last-event-id: /im.test(h));
    assert.ok(resumed.length >= 1, proxy.heads.join("\n---\n"));
    assert.match(resumed[0], new RegExp(`^last-event-id: ${before[2]}\\r$`, "im"));
    assert.ok(!seen.states.some((s) => s.state === "closed"));
  } finally {
    await proxy.close();
  }
});

test("a transient refusal (event: unavailable) is retried until the stream is served", async () => {
  const room = newRoom();
  // MAX_CONNECTIONS=1 on that gateway: hold its one stream.
  const holder = new AbortController();
  const held = await fetch(`${LIMITED_URL}/api/v1/rooms/${room}/logs?access_token=${TOKEN}`, {
    signal: holder.signal,
  });
  assert.equal(held.status, 200);
  const reader = held.body.getReader();
  let text = "";
  const deadline = Date.now() + WAIT_MS;
  while (!text.includes("event: connected")) {
    assert.ok(Date.now() < deadline, "the holding stream never connected");
    const { value, done } = await reader.read();
    assert.ok(!done, "the holding stream ended");
    text += new TextDecoder().decode(value);
  }

  const stream = open({ room, server: LIMITED_URL, history: 0 });
  const seen = record(stream);
  const refused = nextEvent(stream, "unavailable");
  stream.start();
  assert.equal((await refused).reason, "max_connections");
  assert.ok(Number.isFinite((await refused).retryMs));
  await nextEvent(stream, "state", (d) => d.state === "reconnecting");
  assert.notEqual(stream.state, "closed");

  const live = nextEvent(stream, "state", (d) => d.state === "live");
  holder.abort();
  await live;
  const [id] = await publishAll(room, ["after the refusal"]);
  await logsReach(stream, seen, 1);
  assert.deepEqual(seen.logs.map((l) => [l.id, l.log.message]), [[id, "after the refusal"]]);
  assert.ok(seen.unavailable.length >= 1);
  assert.ok(seen.unavailable.every((u) => u.reason === "max_connections"));
  assert.ok(!seen.states.some((s) => s.state === "closed"));
});

test("a final refusal (401, 403) closes the stream for good, saying why", async () => {
  for (const [token, status, room] of [
    ["not-a-jwt", 401, newRoom()],
    [OTHER_TOKEN, 403, newRoom()],
  ]) {
    const stream = open({ room, token });
    const seen = record(stream);
    const closed = nextEvent(stream, "state", (d) => d.state === "closed");
    stream.start();
    const { reason } = await closed;
    assert.match(reason, new RegExp(`^HTTP ${status}: .+`));
    assert.equal(stream.source, null);
    assert.deepEqual(seen.unavailable, []);
    assert.deepEqual(
      seen.states.map((s) => s.state).filter((s) => s !== "connecting"),
      ["closed"],
      JSON.stringify(seen.states),
    );
  }
});

test("follows several rooms on one stream, and setRooms resumes each from the cursor", async () => {
  const [a, b, c] = [newRoom(), newRoom(), newRoom()];
  const older = await publishAll(b, ["b-old"]);
  const stream = open({ rooms: [a, b], history: 10, level: "info" });
  const seen = record(stream);
  const connected = nextEvent(stream, "connected");
  stream.start();
  assert.deepEqual((await connected).rooms, [a, b]);
  await logsReach(stream, seen, 1);
  const first = [...(await publishAll(a, ["a0", "a1"])), ...(await publishAll(b, ["b0"]))];
  await logsReach(stream, seen, 4);
  assert.ok(stream.url().includes(`rooms=${a}%2C${b}`), stream.url());
  assert.ok(stream.lastEventId.startsWith("r1."), stream.lastEventId);

  // A new stream for a, b and c: a and b resume after their positions, c gets its history.
  const cOld = await publishAll(c, ["c-old"]);
  const relive = nextEvent(stream, "connected", (d) => d.rooms.length === 3);
  stream.setRooms([a, b, c]);
  const during = await publishAll(a, ["a2"]);
  await relive;
  await logsReach(stream, seen, 6);
  const later = [...(await publishAll(b, ["b1"])), ...(await publishAll(c, ["c0"]))];
  await logsReach(stream, seen, 8);

  const by = (room) => seen.logs.filter((l) => l.roomId === room).map((l) => l.log.message);
  assert.deepEqual(by(a), ["a0", "a1", "a2"]);
  assert.deepEqual(by(b), ["b-old", "b0", "b1"]);
  assert.deepEqual(by(c), ["c-old", "c0"]);
  assert.ok(seen.logs.every((l) => l.log.roomId === l.roomId));
  assert.equal(older.length + first.length + cOld.length + during.length + later.length, 8);
  assert.deepEqual(seen.duplicates, []);
});

test("a new RoomStream given the last cursor gets exactly what it missed", async () => {
  const rooms = [newRoom(), newRoom()];
  const one = open({ rooms, history: 0 });
  const seen = record(one);
  const live = nextEvent(one, "connected");
  one.start();
  await live;
  await publishAll(rooms[0], ["x0"]);
  await logsReach(one, seen, 1);
  one.close();
  await publishAll(rooms[1], ["y-missed"]);
  await publishAll(rooms[0], ["x-missed"]);

  const two = open({ rooms, history: 100, lastEventId: one.lastEventId });
  const got = [];
  two.start();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no logs")), WAIT_MS);
    two.on.log = (d) => {
      got.push([d.roomId, d.log.message]);
      if (got.length === 2) {
        clearTimeout(timer);
        resolve();
      }
    };
  });
  // Each room resumed after its position: rooms[0] after x0, rooms[1] where the first stream
  // started (history=100 applies only to rooms the cursor lacks).
  const byRoom = new Map(got);
  assert.equal(got.length, 2);
  assert.equal(byRoom.get(rooms[0]), "x-missed");
  assert.equal(byRoom.get(rooms[1]), "y-missed");
});

test("a final refusal on the multi-room route says which room, as `refused` and callbacks", async () => {
  const calls = [];
  const stream = open({
    rooms: ["other", newRoom()],
    token: OTHER_TOKEN,
    on: { refused: (d) => calls.push(["refused", d.status]), state: (d) => calls.push([d.state]) },
  });
  const refused = nextEvent(stream, "refused");
  stream.start();
  const detail = await refused;
  assert.equal(detail.status, 403);
  assert.equal(detail.error, "room_not_allowed");
  assert.match(detail.detail, /^room 'js-.+' is not in the token's 'rooms' claim$/);
  assert.equal(stream.state, "closed");
  assert.deepEqual(calls.slice(-2), [["refused", 403], ["closed"]]);
});

before(() => {
  assert.ok(typeof EventSource === "function");
});
