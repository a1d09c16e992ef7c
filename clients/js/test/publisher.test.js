// The Node Publisher against the real gateway, directly or through a front that fails as a
// load balancer does.
import assert from "node:assert/strict";
import { test } from "node:test";

import { PublishError, Publisher } from "../index.js";
import { env, history, newRoom, startFront } from "./support.js";

const URL_ = env("ROOMLOGS_URL");
const TOKEN = env("ROOMLOGS_TOKEN");
const OTHER_TOKEN = env("ROOMLOGS_OTHER_TOKEN");
const QUICK = { backoffBaseMs: 10, backoffCapMs: 50 };

async function withFront(plan, body) {
  const front = await startFront(URL_, plan);
  try {
    return await body(front);
  } finally {
    await front.close();
  }
}

test("emit stores one log and resolves to its id", async () => {
  const room = newRoom();
  const publisher = new Publisher({ url: URL_ + "/", token: TOKEN });
  const id = await publisher.emit(room, "hello", {
    agentType: "story",
    level: "warn",
    metadata: { step: 1 },
    timestamp: "2026-01-02T03:04:05.678Z",
  });
  const ids = await publisher.emitMany(room, [
    { agentType: "code", level: "info", message: "two", metadata: {} },
    { agentType: "code", level: "error", message: "three", metadata: {} },
  ]);
  const stored = await history(URL_, room, TOKEN);
  assert.deepEqual(
    stored.map((l) => [l.id, l.message, l.level, l.agentType]),
    [
      [id, "hello", "warn", "story"],
      [ids[0], "two", "info", "code"],
      [ids[1], "three", "error", "code"],
    ],
  );
  assert.deepEqual(stored[0].metadata, { step: 1 });
  assert.equal(stored[0].timestamp, "2026-01-02T03:04:05.678Z");
});

test("retries 503, 502 and a lost answer with one Idempotency-Key, storing once", async () => {
  const room = newRoom();
  await withFront([503, 503, "forward-then-502", "forward"], async (front) => {
    const publisher = new Publisher({ url: front.url, token: TOKEN, ...QUICK });
    const id = await publisher.emit(room, "once");
    assert.deepEqual(
      front.requests.map((r) => r.status),
      [503, 503, 502, 202],
    );
    const keys = new Set(front.requests.map((r) => r.key));
    assert.equal(keys.size, 1);
    assert.match([...keys][0], /^[A-Za-z0-9._:-]{1,128}$/);
    // The gateway stored it on the third request; the fourth was answered as a replay.
    assert.equal(front.requests[2].upstream, 202);
    const replay = JSON.parse(front.requests[3].upstreamBody);
    assert.equal(replay.replayed, true);
    assert.deepEqual(replay.ids, [id]);
    const stored = await history(URL_, room, TOKEN);
    assert.deepEqual(stored.map((l) => [l.id, l.message]), [[id, "once"]]);

    // The next call is another publish: a new key.
    await publisher.emit(room, "twice");
    assert.notEqual(front.requests.at(-1).key, front.requests[0].key);
  });
});

test("retries a connection dropped before any answer, with the same key", async () => {
  const room = newRoom();
  await withFront(["drop", 504, "forward"], async (front) => {
    const publisher = new Publisher({ url: front.url, token: TOKEN, ...QUICK });
    const id = await publisher.emit(room, "through a drop");
    assert.deepEqual(front.requests.map((r) => r.step), ["drop", 504, "forward"]);
    assert.equal(new Set(front.requests.map((r) => r.key)).size, 1);
    assert.deepEqual((await history(URL_, room, TOKEN)).map((l) => l.id), [id]);
  });
});

test("retries a gateway that cannot be reached, then says the outcome is unknown", async () => {
  const publisher = new Publisher({ url: "http://127.0.0.1:9", attempts: 3, ...QUICK });
  const error = await publisher.emit(newRoom(), "nowhere").catch((e) => e);
  assert.ok(error instanceof PublishError);
  assert.equal(error.attempts, 3);
  assert.equal(error.status, null);
  assert.match(error.key, /^[0-9a-f-]{36}$/);
  assert.match(error.message, /^not known to be stored after 3 attempts with one Idempotency-Key \(http: /);
});

test("used-up retries keep the last status and the key to look for", async () => {
  await withFront([503, 503, 503], async (front) => {
    const publisher = new Publisher({ url: front.url, token: TOKEN, attempts: 3, ...QUICK });
    const error = await publisher.emit(newRoom(), "never").catch((e) => e);
    assert.ok(error instanceof PublishError);
    assert.equal(error.status, 503);
    assert.equal(error.key, front.requests[0].key);
    assert.equal(front.requests.length, 3);
    assert.match(error.message, /after 3 attempts .*503 test_front: the front answered 503/);
  });
});

test("final refusals are thrown at once with the gateway's error and detail", async () => {
  const room = newRoom();
  const cases = [
    [{ token: "not-a-jwt" }, "m", {}, 401, "invalid_token"],
    [{ token: OTHER_TOKEN }, "m", {}, 403, "room_not_allowed"],
    [{ token: TOKEN }, "m", { level: "loud" }, 400, "invalid_log"],
    [{ token: TOKEN }, "x".repeat(70000), {}, 413, "too_large"],
  ];
  for (const [options, message, extra, status, code] of cases) {
    await withFront([], async (front) => {
      const publisher = new Publisher({ url: front.url, ...options, ...QUICK });
      const error = await publisher.emit(room, message, extra).catch((e) => e);
      assert.ok(error instanceof PublishError, String(error));
      assert.equal(error.status, status);
      assert.equal(error.error, code);
      assert.ok(error.detail.length > 0);
      assert.equal(error.message, `not stored: ${status} ${code}: ${error.detail}`);
      assert.equal(error.key, null);
      assert.equal(front.requests.length, 1, `${status} was retried`);
    });
  }
  assert.deepEqual(await history(URL_, room, TOKEN), []);
});

test("an invalid room id is refused before any request", async () => {
  const publisher = new Publisher({ url: "http://127.0.0.1:9" });
  const error = await publisher.emit("no/slash", "m").catch((e) => e);
  assert.ok(error instanceof PublishError);
  assert.match(error.message, /invalid room id/);
});
